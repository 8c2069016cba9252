"""A 10,000-row x 10-column DataFrame result: nb2api vs the same route hand-written in FastAPI.

The baseline is what a FastAPI user writes today: ``return df.to_dict("records")`` through the
default response path (``jsonable_encoder`` and ``json.dumps``). nb2api serves the notebook
function ``def table() -> pd.DataFrame`` and writes the records column by column.

Both servers run under uvicorn in their own processes on 127.0.0.1 (free ports); the load comes
from ``wrk`` in a third process (a bounded httpx loop when wrk is missing). Rounds alternate the
order (A B, B A, ...) so drift on a shared machine hits both; every run is bounded in time.
Printed: req/s per round, the per-round ratio, its median and spread.

A second part shows that a 10,000-row records request is parsed into a DataFrame with no Python
code per row when no ``Row`` is declared: it counts Python function calls during the parse, for
100 and for 10,000 rows.

    python bench/bench_dataframe.py [--rounds 5] [--seconds 8] [--connections 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROWS, COLUMNS = 10_000, 10

# The table both servers return: 6 float, 2 int, 1 string and 1 timestamp column, fixed seed.
MAKE_TABLE = """
import numpy as np
import pandas as pd

_rng = np.random.default_rng(0)
DF = pd.DataFrame({f"f{i}": _rng.normal(size=ROWS) for i in range(6)})
DF["i0"] = _rng.integers(0, 1_000_000, ROWS)
DF["i1"] = _rng.integers(-50, 50, ROWS)
DF["name"] = [f"item-{i}" for i in range(ROWS)]
DF["when"] = pd.date_range("2024-01-01", periods=ROWS, freq="min")
""".replace("ROWS", str(ROWS))


# -- the two apps (uvicorn factories) ---------------------------------------------------------


def nb2api_app():
    import nb2api

    return nb2api.create_app(os.environ["BENCH_NOTEBOOK"])


def fastapi_app():
    from fastapi import FastAPI

    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    df = namespace["DF"]
    app = FastAPI()

    @app.post("/table")
    def table():
        return df.to_dict("records")

    return app


def write_notebook(folder: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_code_cell("#| setup\n" + MAKE_TABLE.strip()),
        new_code_cell("#| api\ndef table() -> pd.DataFrame:\n    return DF"),
    ]
    path = folder / "bench_table.ipynb"
    nbformat.write(nb, path)
    return path


# -- servers and load -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(factory: str, env: dict[str, str]):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", f"bench_dataframe:{factory}",
         "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{factory} exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.post(f"{url}/table", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{factory} did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


_WRK_POST = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'


def load(url: str, seconds: float, connections: int, script: Path) -> float:
    """Requests per second against POST url/table for ``seconds``."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
             "-s", str(script), f"{url}/table"],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        ).stdout
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise SystemExit(f"{url}: {errors.group(1)} failed responses\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # Fallback: a bounded httpx loop in a separate process.
    code = textwrap.dedent(f"""
        import concurrent.futures, time, httpx
        end = time.monotonic() + {seconds}
        def worker():
            n = 0
            with httpx.Client(timeout=30) as c:
                while time.monotonic() < end:
                    c.post("{url}/table").raise_for_status(); n += 1
            return n
        with concurrent.futures.ThreadPoolExecutor({connections}) as pool:
            print(sum(pool.map(lambda _: worker(), range({connections}))) / {seconds})
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    return float(out.strip())


# -- the parse path ---------------------------------------------------------------------------


def python_calls(func, *args) -> int:
    """How many Python-level function calls ``func(*args)`` makes (C code is not counted)."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profile)
    try:
        func(*args)
    finally:
        sys.setprofile(None)
    return count


def parse_path() -> None:
    sys.path.insert(0, str(ROOT))
    from typing import Annotated

    import pandas as pd
    from pydantic import BaseModel, TypeAdapter

    from nb2api.datatypes import request_type

    class Row(BaseModel):
        a: float
        b: int
        c: str

    def records(n: int) -> list[dict]:
        return json.loads(json.dumps([{"a": i / 3, "b": i, "c": f"x{i}"} for i in range(n)]))

    plain = TypeAdapter(request_type(pd.DataFrame))
    typed = TypeAdapter(request_type(Annotated[pd.DataFrame, Row]))
    small, large = records(100), records(10_000)
    plain.validate_python(small)
    typed.validate_python(small)
    print("\nParsing a records body into a DataFrame (after json.loads), per request:")
    cases = (("pd.DataFrame (no Row)", plain), ("Annotated[pd.DataFrame, Row]", typed))
    for label, adapter in cases:
        calls = [python_calls(adapter.validate_python, rows) for rows in (small, large)]
        started = time.perf_counter()
        for _ in range(5):
            adapter.validate_python(large)
        ms = (time.perf_counter() - started) / 5 * 1000
        print(f"  {label:30s} Python calls: {calls[0]:>6} for 100 rows, {calls[1]:>6} for "
              f"10,000 rows; {ms:6.1f} ms for 10,000 rows")
    print("  (the same number of Python calls for 100 and 10,000 rows: no Python code per row)")


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--skip-http", action="store_true", help="only the parse-path part")
    options = parser.parse_args()

    if not options.skip_http:
        http(options)
    parse_path()


def http(options) -> None:
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "BENCH_NOTEBOOK": str(write_notebook(folder))}
    script = folder / "post.lua"
    script.write_text(_WRK_POST)
    tool = "wrk" if shutil.which("wrk") else "httpx loop"
    print(f"{ROWS:,} rows x {COLUMNS} columns, POST /table, {options.connections} connections, "
          f"{options.seconds:g} s per run, {options.rounds} rounds, load from {tool}")
    with server("nb2api_app", env) as ours, server("fastapi_app", env) as theirs:
        a, b = httpx.post(f"{ours}/table", timeout=30), httpx.post(f"{theirs}/table", timeout=30)
        if a.json() != b.json():
            raise SystemExit("the two servers do not return the same records")
        print(f"response: {len(a.content) / 1e6:.2f} MB (nb2api), {len(b.content) / 1e6:.2f} MB "
              "(FastAPI)")
        for url in (ours, theirs):  # warm up both
            load(url, 2, options.connections, script)
        rows = []
        for r in range(options.rounds):
            order = [("nb2api", ours), ("fastapi", theirs)]
            if r % 2:
                order.reverse()
            result = {name: load(url, options.seconds, options.connections, script)
                      for name, url in order}
            ratio = result["nb2api"] / result["fastapi"]
            rows.append((result["nb2api"], result["fastapi"], ratio))
            first = "A B" if r % 2 == 0 else "B A"
            print(f"round {r + 1} ({first}): nb2api {result['nb2api']:7.1f} req/s   "
                  f"FastAPI to_dict {result['fastapi']:6.1f} req/s   ratio {ratio:5.2f}x")
    ratios = [r[2] for r in rows]
    base = [r[1] for r in rows]
    ours_rps = [r[0] for r in rows]
    print(f"median ratio {statistics.median(ratios):.2f}x (rounds: {min(ratios):.2f}-"
          f"{max(ratios):.2f}x); nb2api median {statistics.median(ours_rps):.1f} req/s, "
          f"baseline median {statistics.median(base):.1f} req/s (spread {min(base):.1f}-"
          f"{max(base):.1f}); target >= 3x")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
