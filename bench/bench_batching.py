"""``#| batch``: 64 clients each sending one row to a scikit-learn model, batched and not.

The model: a ``RandomForestClassifier(n_estimators=100)`` on 20 features, trained here once and
pickled, so every server loads the very same model; its ``predict_proba`` costs about as much for
64 rows as for one. Three servers answer it, each a subprocess on a free 127.0.0.1 port:

- nb2api, ``#| batch: max_size=64, max_wait_ms=5`` on ``predict(X: np.ndarray)``;
- the same notebook's unbatched twin route ``predict_one`` (same server, same function body);
- LitServe (PyPI's ``litserve``) with ``max_batch_size=64, batch_timeout=0.005``, the same
  model, ``decode_request``/``batch``/``unbatch`` the way its docs write them.

The load is ``wrk`` (64 connections, one row per request) in a separate process. Rounds rotate
the order of the three so drift on a shared machine hits all; printed: req/s, p50 and p99 per
side (medians of the rounds), the per-round ratios and their medians, and the batch sizes nb2api
formed (median and p90 from its ``/metrics`` histogram, over the measured rounds).

    python bench/bench_batching.py [--rounds 4] [--seconds 5] [--processes]

``--processes`` also measures the batched route on a process pool of one worker
(``#| executor: process``).

Needs: wrk (Debian's package), scikit-learn and bench/requirements.txt (litserve).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import nbformat
from run import Load, Server, say, start, wrk

HERE = Path(__file__).resolve().parent
CONNECTIONS = 64
FEATURES = 20
ROW = [round(0.1 * i - 1.0, 2) for i in range(FEATURES)]
BODY = json.dumps({"X": [ROW]}, separators=(",", ":"))

SETUP = """\
#| setup
import os
import pickle

import numpy as np

with open(os.environ["BENCH_MODEL"], "rb") as file:
    MODEL = pickle.load(file)
"""
BATCHED = """\
#| api
#| batch: max_size=64, max_wait_ms=5
def predict(X: np.ndarray) -> np.ndarray:
    \"\"\"Class probabilities, one row of them per row of X.\"\"\"
    return MODEL.predict_proba(X)
"""
UNBATCHED = """\
#| api
def predict_one(X: np.ndarray) -> np.ndarray:
    \"\"\"The same, one request per call.\"\"\"
    return MODEL.predict_proba(X)
"""

IN_PROCESSES = """\
#| api
#| batch: max_size=64, max_wait_ms=5
#| executor: process
def predict_processes(X: np.ndarray) -> np.ndarray:
    \"\"\"The same, batched, on the process pool.\"\"\"
    return MODEL.predict_proba(X)
"""

LITSERVE_APP = """\
import os
import pickle
import sys

import litserve as ls
import numpy as np


class Model(ls.LitAPI):
    def setup(self, device):
        with open(os.environ["BENCH_MODEL"], "rb") as file:
            self.model = pickle.load(file)

    def decode_request(self, request):
        return np.asarray(request["X"], dtype=np.float64)

    def batch(self, inputs):
        return np.concatenate(inputs)

    def predict(self, x):
        return self.model.predict_proba(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return [output.tolist()]


if __name__ == "__main__":
    # litserve 0.2.19 turns its MCP server on when "mcp" is installed, then needs "fastmcp"
    # for it: without fastmcp it cannot start at all. The bench uses no MCP.
    import litserve.server
    litserve.server._MCP_AVAILABLE = False
    api = Model(max_batch_size=64, batch_timeout=0.005)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), num_api_servers=1,
               generate_client_file=False, log_level="warning")
"""


def train(path: Path) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=2000, n_features=FEATURES, random_state=0)
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    path.write_bytes(pickle.dumps(model))


def write_notebook(path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    cells = (SETUP, BATCHED, UNBATCHED, IN_PROCESSES)
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, path)


def batch_sizes(url: str) -> dict[float, float]:
    """The cumulative bucket counts of nb2api's batch-size histogram for /predict."""
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    found = {}
    for bound, count in re.findall(
            r'^nb2api_batch_size_bucket\{le="([^"]+)",route="/predict"\} (\S+)', text, re.M):
        found[float(bound)] = float(count)
    return found


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The histogram bucket (as "a-b") holding the q-quantile of the batches between scrapes."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[float("inf")]
    if not total:
        return "none"
    lower = 0.0
    for bound, cumulative in counts.items():
        if cumulative >= q * total:
            return f"{lower:g}" if bound == lower + 1 else f"{lower + 1:g}-{bound:g}"
        lower = bound
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--processes", action="store_true",
                        help="also measure the batched route on a process pool of one worker")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-batching-"))
    model, notebook, app = folder / "model.pkl", folder / "batching.ipynb", folder / "lit.py"
    train(model)
    write_notebook(notebook)
    app.write_text(LITSERVE_APP)
    env = {"BENCH_MODEL": str(model)}
    say(f"batching: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{args.rounds} rounds of {args.seconds:g} s, {CONNECTIONS} connections, 1 row each")
    nb2api_cmd = [sys.executable, "-m", "nb2api", "serve", str(notebook), "--host", "127.0.0.1",
                  "--port", "{port}", "--log-format", "json", "--no-access-log",
                  "--processes", "1"]
    lit_cmd = [sys.executable, str(app), "{port}"]
    with start("nb2api", nb2api_cmd, "/healthz", env=env) as ours, \
            start("litserve", lit_cmd, "/health", env=env, timeout=180) as lit:
        targets = {
            "nb2api batched": (ours, "/predict"),
            "nb2api unbatched": (ours, "/predict_one"),
            "litserve batched": (lit, "/predict"),
        }
        if args.processes:
            targets["nb2api processes"] = (ours, "/predict_processes")

        def measure(server: Server, path: str, seconds: float) -> Load:
            return wrk(server.url + path, seconds=seconds, connections=CONNECTIONS,
                       body=BODY, timeout="30s")

        for server, path in targets.values():
            measure(server, path, 2)  # warm up
        results: dict[str, list[Load]] = {name: [] for name in targets}
        names = list(targets)
        before = batch_sizes(ours.url)
        for i in range(args.rounds):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                results[name].append(measure(*targets[name], args.seconds))
        after = batch_sizes(ours.url)
    for name, loads in results.items():
        say(f"  {name:<17} req/s median {statistics.median(r.rps for r in loads):>8,.0f} "
            f"(rounds {', '.join(f'{r.rps:,.0f}' for r in loads)})  "
            f"p50 {statistics.median(r.p50_ms for r in loads):7.2f} ms  "
            f"p99 {statistics.median(r.p99_ms for r in loads):8.2f} ms  "
            f"errors {sum(r.errors for r in loads)}")
    figures: dict[str, object] = {name: [r.__dict__ for r in loads]
                                  for name, loads in results.items()}
    ours_rps = [r.rps for r in results["nb2api batched"]]
    for other, target in (("nb2api unbatched", 5.0), ("litserve batched", 1.0)):
        ratios = [a / b.rps for a, b in zip(ours_rps, results[other], strict=True)]
        ratio = statistics.median(ratios)
        p99_ours = statistics.median(r.p99_ms for r in results["nb2api batched"])
        p99_other = statistics.median(r.p99_ms for r in results[other])
        say(f"  nb2api batched / {other}: req/s x{ratio:.2f} (rounds "
            f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= {target:g}: "
            f"{'met' if ratio >= target else 'NOT met'}), p99 {p99_ours:.1f} ms against "
            f"{p99_other:.1f} ms")
        figures[f"ratio over {other}"] = ratios
    median, p90 = quantile(before, after, 0.5), quantile(before, after, 0.9)
    say(f"  batch sizes nb2api formed (items per call, from /metrics): median {median}, "
        f"p90 {p90}")
    figures["batch_size"] = {"median": median, "p90": p90}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
