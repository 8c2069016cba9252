"""A 10,000-row x 10-column DataFrame result: nb2api vs the same route hand-written in FastAPI.

The baseline is what a FastAPI user writes today: ``return df.to_dict("records")`` through the
default response path (``jsonable_encoder`` and ``json.dumps``). nb2api serves the notebook
function ``def table() -> pd.DataFrame`` and writes the records column by column.

Both servers run under uvicorn in their own processes on 127.0.0.1 (free ports); the load comes
from ``wrk`` in a third process (servers and load as in ``bench/run.py``). Rounds alternate the
order (A B, B A, ...) so drift on a shared machine hits both; every run is bounded in time.
Printed: req/s per round, the per-round ratio, its median and spread.

A second part shows that a 10,000-row records request is parsed into a DataFrame with no Python
code per row when no ``Row`` is declared: it counts Python function calls during the parse, for
100 and for 10,000 rows.

    python bench/bench_dataframe.py [--rounds 5] [--seconds 8] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from run import alternate, start, wrk

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

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

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


# -- servers and load: bench/run.py's ------------------------------------------------------


def uvicorn_app(factory: str, notebook: Path) -> dict:
    """``start`` arguments for one of this file's factories under uvicorn, like run.py's servers."""
    command = [sys.executable, "-m", "uvicorn", "--factory", f"bench_dataframe:{factory}",
               "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", "{port}",
               "--log-level", "warning", "--no-access-log"]
    return {"name": factory, "command": command, "probe": "/healthz",
            "env": {"BENCH_NOTEBOOK": str(notebook)}}


def load(server, seconds: float, connections: int) -> float:
    """Requests per second against POST /table for ``seconds``; every answer must be a 200."""
    result = wrk(server.url + "/table", seconds=seconds, connections=connections, body=None)
    if result.errors:
        raise SystemExit(f"{server.name}: {result.errors} failed requests")
    return result.rps


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

    from nb2api.types.datatypes import request_type

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
    if not shutil.which("wrk"):
        raise SystemExit("the load comes from wrk: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-"))
    notebook = write_notebook(folder)
    print(f"{ROWS:,} rows x {COLUMNS} columns, POST /table, {options.connections} connections, "
          f"{options.seconds:g} s per run, {options.rounds} rounds, load from wrk")
    with start(**uvicorn_app("nb2api_app", notebook)) as ours, \
            start(**uvicorn_app("fastapi_app", notebook)) as theirs:
        a = httpx.post(f"{ours.url}/table", timeout=30)
        b = httpx.post(f"{theirs.url}/table", timeout=30)
        if a.json() != b.json():
            raise SystemExit("the two servers do not return the same records")
        print(f"response: {len(a.content) / 1e6:.2f} MB (nb2api), {len(b.content) / 1e6:.2f} MB "
              "(FastAPI)")
        for server in (ours, theirs):  # warm up both
            load(server, 2, options.connections)
        ours_rps, base = alternate(ours, theirs, options.rounds,
                                   lambda s: load(s, options.seconds, options.connections))
    ratios = [x / y for x, y in zip(ours_rps, base, strict=True)]
    for r, (x, y, ratio) in enumerate(zip(ours_rps, base, ratios, strict=True)):
        first = "A B" if r % 2 == 0 else "B A"
        print(f"round {r + 1} ({first}): nb2api {x:7.1f} req/s   FastAPI to_dict {y:6.1f} req/s"
              f"   ratio {ratio:5.2f}x")
    print(f"median ratio {statistics.median(ratios):.2f}x (rounds: {min(ratios):.2f}-"
          f"{max(ratios):.2f}x); nb2api median {statistics.median(ours_rps):.1f} req/s, "
          f"baseline median {statistics.median(base):.1f} req/s (spread {min(base):.1f}-"
          f"{max(base):.1f}); target >= 3x")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
