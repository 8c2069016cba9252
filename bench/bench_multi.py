"""Ten notebooks: one ``nb2api serve folder/`` against ten ``nb2api serve NOTEBOOK`` processes.

    python bench/bench_multi.py            # 3 rounds, 5 s of load per side and round
    python bench/bench_multi.py --rounds 1 --seconds 2

Each notebook is a small data-science service (numpy, pandas and a pydantic model, a linear
model over a few features), different in each notebook. Per round, both sides are started from
cold (the order alternates between rounds) and measured:

- start: from spawning the process(es) to every notebook answering ``/readyz`` (the ten separate
  processes are spawned at once, as a machine starting a team's services would);
- idle memory: resident memory (RSS) of every process tree, summed, after start and one request
  per notebook; PSS too (shared pages divided among the processes that share them), which is the
  fairer figure for several processes;
- req/s on one notebook's routes: wrk, 64 connections, against ``/nb0/predict`` (pandas) and
  ``/nb0/add`` (the smallest route: what serving itself costs) on the one server, and the same
  routes of the first of the ten.

Medians over the rounds, and the ratio one server / ten processes. Needs wrk (Debian's package).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: free ports, wrk, process trees)

NOTEBOOKS = 10
BODY = '{"features": {"size": 3.5, "rooms": 2, "age": 12.0}}'
ADD_BODY = '{"a": 1.5, "b": 2.25}'


def _notebook(index: int) -> dict:
    cells = [
        "#| setup\nimport numpy as np\nimport pandas as pd\nfrom pydantic import BaseModel\n\n"
        f"WEIGHTS = pd.Series({{'size': {1.5 + index}, 'rooms': {0.25 * index}, 'age': -0.1}})\n"
        "class Features(BaseModel):\n    size: float\n    rooms: int\n    age: float\n",
        "#| api\ndef predict(features: Features) -> float:\n"
        "    row = pd.Series(features.model_dump())\n"
        f"    return float(np.dot(row[WEIGHTS.index], WEIGHTS) + {index})\n\n\n"
        "def add(a: float, b: float) -> float:\n    return a + b\n",
    ]
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
         "execution_count": None, "id": f"c{i}"} for i, source in enumerate(cells)]}


def _pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def _tree(process: subprocess.Popen) -> list[int]:
    return [process.pid, *bench._children(process.pid)]


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def servers(commands: list[list[str]], probes: list[str]) -> Iterator[tuple[list, float]]:
    """Spawn every command at once; yield (processes, seconds until every probe answered)."""
    logs, processes = [], []
    began = time.perf_counter()
    for command in commands:
        log = tempfile.NamedTemporaryFile(prefix="bench-multi-", suffix=".log", delete=False)
        logs.append(log.name)
        processes.append(subprocess.Popen(command, env=bench.ENV, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    try:
        waiting = list(zip(processes, probes, logs, strict=True))
        while waiting:
            process, probe, log = waiting[0]
            if bench._get(probe, timeout=1.0) == 200:
                waiting.pop(0)
                continue
            if process.poll() is not None or time.perf_counter() - began > 300:
                raise RuntimeError(f"{process.args[3:5]} did not start:\n"
                                   f"{Path(log).read_text()[-3000:]}")
            time.sleep(0.01)
        yield processes, time.perf_counter() - began
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs:
            os.unlink(log)


def _serve(target: str, port: int) -> list[str]:
    return [sys.executable, "-m", "nb2api", "serve", target, "--host", "127.0.0.1", "--port",
            str(port), "--log-format", "json", "--no-access-log"]


def _post(url: str) -> None:
    import urllib.request

    request = urllib.request.Request(url, BODY.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, url


def _load(base: str, seconds: float) -> dict[str, float]:
    """req/s on the notebook's pandas route and on its smallest one (what serving costs)."""
    bench.wrk(f"{base}/predict", seconds=1, connections=64, body=BODY)  # warm up
    predict = bench.wrk(f"{base}/predict", seconds=seconds, connections=64, body=BODY)
    add = bench.wrk(f"{base}/add", seconds=seconds, connections=64, body=ADD_BODY)
    return {"rps_predict": predict.rps, "rps_add": add.rps,
            "errors": predict.errors + add.errors}


def one_server(folder: Path, seconds: float) -> dict[str, float]:
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    with servers([_serve(str(folder), port)], [f"{base}/readyz"]) as (processes, started):
        for index in range(NOTEBOOKS):
            _post(f"{base}/nb{index}/predict")
        pids = [pid for p in processes for pid in _tree(p)]
        memory = {"rss_mib": _rss_mib(pids), "pss_mib": _pss_mib(pids)}
        return {"start_s": started, **memory, **_load(f"{base}/nb0", seconds)}


def separate(folder: Path, seconds: float) -> dict[str, float]:
    ports = [bench.free_port() for _ in range(NOTEBOOKS)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    commands = [_serve(str(folder / f"nb{i}.ipynb"), port) for i, port in enumerate(ports)]
    with servers(commands, [f"{base}/readyz" for base in bases]) as (processes, started):
        for base in bases:
            _post(f"{base}/predict")
        pids = [pid for p in processes for pid in _tree(p)]
        memory = {"rss_mib": _rss_mib(pids), "pss_mib": _pss_mib(pids)}
        return {"start_s": started, **memory, **_load(bases[0], seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-multi-"))
    for index in range(NOTEBOOKS):
        (folder / f"nb{index}.ipynb").write_text(json.dumps(_notebook(index)))
    results: dict[str, list[dict[str, float]]] = {"one": [], "ten": []}
    for round_ in range(args.rounds):
        order = [("one", one_server), ("ten", separate)]
        for name, measure in order if round_ % 2 == 0 else order[::-1]:
            results[name].append(measure(folder, args.seconds))
            print(f"round {round_ + 1} {name}: {results[name][-1]}", flush=True)
    print(f"\n{NOTEBOOKS} notebooks, {args.rounds} rounds, medians "
          f"(one = 'nb2api serve folder/', ten = {NOTEBOOKS} x 'nb2api serve NOTEBOOK')")
    print(f"{'':14}{'one':>10}{'ten':>10}{'one / ten':>12}")
    for key, label in (("rss_mib", "RSS MiB"), ("pss_mib", "PSS MiB"), ("start_s", "start s"),
                       ("rps_predict", "req/s predict"), ("rps_add", "req/s add")):
        one = statistics.median(r[key] for r in results["one"])
        ten = statistics.median(r[key] for r in results["ten"])
        print(f"{label:14}{one:10.1f}{ten:10.1f}{one / ten:12.2f}")
    errors = sum(r["errors"] for side in results.values() for r in side)
    print(f"errors under load: {errors:.0f}")


if __name__ == "__main__":
    main()
