"""What request logs and metrics cost per request, measured in-process, for one tree or two.

    python bench/bench_logging.py                          # this tree
    python bench/bench_logging.py --against /path/to/tree  # and another checkout, side by side

Drives the app of ``bench/bench.ipynb`` as ASGI, POST /add with a JSON body, with fake receive and
send (no server, no sockets), under ``nb2api serve``'s JSON logging setup writing to /dev/null.
Each round runs every setting in a fresh process for each tree, alternating which tree goes first,
and times wall clock and CPU of the whole process (so a thread that writes the log counts too).
The report gives, per setting, the median microseconds per request and new/old ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.config
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BODY = b'{"a": 1.5, "b": 2.25}'
SETTINGS = {  # name -> (access log, metrics)
    "log+metrics": (True, True),
    "log only": (True, False),
    "metrics only": (False, True),
    "neither": (False, False),
}


def _scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/add", "raw_path": b"/add", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode())],
        "state": {},
    }


async def _drive(app: Any, requests: int) -> tuple[float, float]:
    """Seconds of wall clock and of process CPU for ``requests`` calls of POST /add."""
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await app(_scope(), receive, send)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if statuses != [200] * requests:
        raise RuntimeError(f"unexpected statuses: {sorted(set(statuses))}")
    return wall, cpu


async def _lifespan(app: Any, requests: int, repeats: int) -> list[tuple[float, float]]:
    started: asyncio.Queue = asyncio.Queue()
    events = iter([{"type": "lifespan.startup"}])
    stop = asyncio.Event()

    async def receive() -> dict[str, Any]:
        event = next(events, None)
        if event is not None:
            return event
        await stop.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            await started.put(message)

    task = asyncio.create_task(app({"type": "lifespan"}, receive, send))
    await started.get()
    await _drive(app, requests // 5)  # warm up: caches, first-call imports
    results = [await _drive(app, requests) for _ in range(repeats)]
    stop.set()
    await task
    return results


def measure(setting: str, requests: int, repeats: int) -> dict[str, float]:
    """In this process, with the tree on ``sys.path``: best per-request cost of ``setting``."""
    from nb2api import create_app
    try:
        from nb2api.serve.logs import logging_config
    except ImportError:  # a tree from before the layout by stage (nb2api/logs.py)
        from nb2api.logs import logging_config  # type: ignore[no-redef]

    access_log, metrics = SETTINGS[setting]
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the handler writes here until exit
    logging.config.dictConfig(logging_config("json", "info"))
    app = create_app(BENCH / "bench.ipynb", access_log=access_log, metrics=metrics)
    results = asyncio.run(_lifespan(app, requests, repeats))
    logging.shutdown()
    return {"wall_us": min(w for w, _ in results) / requests * 1e6,
            "cpu_us": min(c for _, c in results) / requests * 1e6}


def _run(tree: Path, setting: str, requests: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--measure", setting, "--requests", str(requests),
         "--repeats", str(repeats)],
        env=env, cwd=str(tree), capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated settings: " + ", ".join(SETTINGS))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.requests, args.repeats)))
        return
    trees = {"new": ROOT} if args.against is None else {"old": args.against.resolve(),
                                                         "new": ROOT}
    settings = args.only.split(",") if args.only else list(SETTINGS)
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for setting in settings:
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in order:
                figures.setdefault((name, setting), []).append(
                    _run(trees[name], setting, args.requests, args.repeats))
    print(f"POST /add in-process, us per request: median of {args.rounds} rounds "
          f"(best of {args.repeats} x {args.requests} requests each)")
    for setting in settings:
        row = [f"{setting:13}"]
        for name in trees:
            runs = figures[name, setting]
            wall = statistics.median(r["wall_us"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            row.append(f"{name}: wall {wall:6.1f} cpu {cpu:6.1f}")
        if len(trees) == 2:
            ratios = [n["cpu_us"] / o["cpu_us"]
                      for o, n in zip(figures["old", setting], figures["new", setting],
                                      strict=True)]
            row.append(f"new/old cpu {statistics.median(ratios):.3f} "
                       f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")
        print("  ".join(row))


if __name__ == "__main__":
    main()
