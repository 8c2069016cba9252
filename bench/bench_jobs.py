"""Long-running work: what jobs and streams cost, measured against anchors in the same run.

    python bench/bench_jobs.py            # about 2 minutes
    python bench/bench_jobs.py --quick

1. Submitting jobs: POST /add with 'Prefer: respond-async' (202, the job stored in SQLite and
   run in the background) against the same trivial POST /add answered synchronously, on one
   server, rounds alternating; the median of the per-round ratios (the issue asks >= 0.5).
2. /healthz p99 while 8 CPU-bound jobs run (pure Python, '#| executor: process') against its
   p99 on the idle server, rounds alternating (the issue asks <= 2x).
3. 1,000 concurrent Server-Sent Events streams of 100 items each (an async generator), from one
   client process: completed streams, items and errors.

Needs wrk (Debian's package) and httpx. Every server is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import _script, start, wrk  # noqa: E402 - bench/run.py's servers and load

NOTEBOOK = """#| api
import time
from typing import AsyncIterator

def add(a: float, b: float) -> float:
    return a + b

#| executor: process
def burn(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

async def items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
"""


def _lua(headers: dict[str, str]) -> str:
    path = Path(_script("POST", json.dumps({"a": 1.5, "b": 2.25})))
    text = path.read_text() + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    out = path.with_name(f"jobs-{abs(hash(text))}.lua")
    out.write_text(text)
    return str(out)


def submit_rate(server, args) -> float:
    import subprocess

    def load(headers: dict[str, str]):
        command = ["wrk", "-t2", "-c32", f"-d{args.seconds}s", "--latency", "-s", _lua(headers),
                   server.url + "/add"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        import re

        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return rps, int(bad.group(1)) if bad else 0

    load({"Prefer": "respond-async"})  # warm up (and make the database)
    ratios, sync_rps, job_rps, errors = [], [], [], 0
    for i in range(args.rounds):
        order = ["sync", "job"] if i % 2 == 0 else ["job", "sync"]
        got = {}
        for kind in order:
            rps, bad = load({"Prefer": "respond-async"} if kind == "job" else {})
            got[kind] = rps
            errors += bad
        sync_rps.append(got["sync"])
        job_rps.append(got["job"])
        ratios.append(got["job"] / got["sync"])
    ratio = statistics.median(ratios)
    print("1. submit: POST /add with Prefer: respond-async (202) vs synchronous, 32 connections")
    print(f"   sync req/s median {statistics.median(sync_rps):,.0f}; submit req/s median "
          f"{statistics.median(job_rps):,.0f}; non-2xx {errors}")
    print(f"   ratio submit/sync: median {ratio:.3f} (rounds "
          f"{', '.join(f'{r:.3f}' for r in ratios)}); asked >= 0.5")
    return ratio


def _post(url: str, body: dict, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def _status(url: str) -> str:
    with urllib.request.urlopen(url) as answer:
        return json.loads(answer.read())["status"]


def _cancel(url: str) -> None:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()
    except urllib.error.HTTPError:  # 409: it had ended
        pass


def healthz_under_jobs(server, args) -> float:
    def p99() -> float:
        return wrk(server.url + "/healthz", seconds=args.seconds, connections=4, method="GET",
                   body=None).p99_ms

    p99()  # warm up
    idle, busy = [], []
    ids: list[str] = []

    def loaded() -> float:
        ids.extend(_post(server.url + "/burn", {"seconds": 3 * args.seconds},
                         {"Prefer": "respond-async"})["id"] for _ in range(8))
        while not any(_status(f"{server.url}/jobs/{j}") == "running" for j in ids):
            time.sleep(0.05)
        return p99()

    for i in range(args.rounds):
        order = [(idle, p99), (busy, loaded)] if i % 2 == 0 else [(busy, loaded), (idle, p99)]
        for results, measure in order:
            results.append(measure())
            for job_id in ids:  # stop the jobs before the next idle measure
                _cancel(f"{server.url}/jobs/{job_id}")
            ids.clear()
    ratio = statistics.median(b / a for a, b in zip(idle, busy, strict=True))
    print("2. /healthz p99 (wrk, 4 connections) idle vs while 8 CPU-bound jobs run "
          "(#| executor: process)")
    print(f"   idle p99 median {statistics.median(idle):.2f} ms; busy p99 median "
          f"{statistics.median(busy):.2f} ms")
    print(f"   ratio busy/idle: median {ratio:.2f}; asked <= 2")
    return ratio


async def streams(server, count: int, items: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    done = errors = received = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal done, errors, received
        try:
            async with client.stream("POST", "/items", json={"n": items},
                                     headers={"Accept": "text/event-stream"}) as answer:
                got = 0
                ended = False
                async for line in answer.aiter_lines():
                    if line.startswith("data: ") and not ended:
                        got += 1
                    if line == "event: end":
                        ended = True
                if answer.status_code == 200 and ended and got == items:
                    done += 1
                    received += got
                else:
                    errors += 1
        except httpx.HTTPError:
            errors += 1

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
        await asyncio.gather(*(one(client) for _ in range(count)))
    seconds = time.perf_counter() - began
    print(f"3. {count:,} concurrent SSE streams of {items} items (async generator)")
    print(f"   completed {done:,}, items {received:,}, errors {errors} in {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="submit,healthz,streams",
                        help="some of: submit, healthz, streams")
    args = parser.parse_args()
    args.rounds = 3 if args.quick else 5
    args.seconds = 2 if args.quick else 4
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-jobs-"))
    path = folder / "jobs.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK)]), path)
    command = [sys.executable, "-m", "nb2api", "serve", str(path), "--host", "127.0.0.1",
               "--port", "{port}", "--log-format", "json", "--log-level", "warning",
               "--no-access-log", "--max-jobs", "10000000"]
    with start("nb2api", command, "/healthz") as server:
        only = args.only.split(",")
        if "submit" in only:
            submit_rate(server, args)
        if "healthz" in only:
            healthz_under_jobs(server, args)
        if "streams" in only:
            asyncio.run(streams(server, 1000, 100))


if __name__ == "__main__":
    main()
