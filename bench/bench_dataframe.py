"""DataFrames in and out, 10,000 rows x 10 columns: nb2api against the same routes hand-written
in FastAPI, side by side in one run.

Anchors (a FastAPI user who knows pandas and Arrow writes these):
- JSON result: ``Response(df.to_json(orient="records", double_precision=15, date_format="iso"))``
  (pandas' writer keeps at most 15 significant digits; nb2api's floats round-trip exactly);
- Arrow result: ``Response(<the table as an Arrow IPC stream>)``; nb2api answers the same route
  with ``Accept: application/vnd.apache.arrow.stream``, and its ratio to nb2api's own JSON too;
- JSON body into a DataFrame: ``pd.read_json(body, orient="records")`` and
  ``pd.DataFrame.from_records(json.loads(body))``; nb2api takes ``{"df": [...records...]}``;
- Arrow body into a DataFrame: ``pa.ipc.open_stream(body).read_all().to_pandas()``.

Every server runs under uvicorn in its own process on 127.0.0.1 (free ports); the load comes from
``wrk`` (servers and load as in ``bench/run.py``). Rounds alternate the order (A B, B A, ...) so
drift on a shared machine hits both; printed: medians of req/s and of the per-round ratios.
The JSON result is also measured from an nb2api server and a FastAPI server that cannot import
pyarrow (``import pyarrow`` blocked in their processes: a plain ``pip install nb2api``, where
pandas keeps strings as Python objects), and nb2api's bytes there are checked against its own
with pyarrow. A last part times the same work in one process, without HTTP (writers and parsers,
medians; the writers without pyarrow in a child process that blocks it), and ``--profile`` adds
where nb2api's JSON writer spends its time (cProfile).

    python bench/bench_dataframe.py [--rounds 4] [--seconds 5] [--connections 8] [--profile]
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
from fastapi import Request  # module level: the hand-written routes' annotations name it
from run import start

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


# -- the apps (uvicorn factories) -------------------------------------------------------------


def nb2api_app():
    import nb2api

    return nb2api.create_app(os.environ["BENCH_NOTEBOOK"])


def block_pyarrow() -> None:
    """From here on, ``import pyarrow`` fails in this process, as without the ``arrow`` extra
    (pandas then keeps strings as Python objects, as it does there)."""
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        raise RuntimeError("block pyarrow before pandas or pyarrow is imported")
    sys.modules["pyarrow"] = None  # type: ignore[assignment]


def nb2api_app_without_pyarrow():
    block_pyarrow()
    return nb2api_app()


def fastapi_app():
    import io

    import pandas as pd
    from fastapi import FastAPI, Response

    try:
        import pyarrow as pa
    except ImportError:  # fastapi_app_without_pyarrow: its Arrow routes are not asked for
        pa = None
    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    df = namespace["DF"]
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/table_to_json")
    def table_to_json():
        text = df.to_json(orient="records", double_precision=15, date_format="iso")
        return Response(text, media_type="application/json")

    @app.post("/table_to_dict")
    def table_to_dict():
        return df.to_dict("records")

    @app.post("/table_arrow")
    def table_arrow():
        table = pa.Table.from_pandas(df, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW)

    @app.post("/ingest_read_json")
    async def ingest_read_json(request: Request):
        return len(pd.read_json(io.BytesIO(await request.body()), orient="records"))

    @app.post("/ingest_from_records")
    async def ingest_from_records(request: Request):
        return len(pd.DataFrame.from_records(json.loads(await request.body())))

    @app.post("/ingest_arrow")
    async def ingest_arrow(request: Request):
        return len(pa.ipc.open_stream(await request.body()).read_all().to_pandas())

    return app


def fastapi_app_without_pyarrow():
    block_pyarrow()
    return fastapi_app()


ARROW = "application/vnd.apache.arrow.stream"


def write_notebook(folder: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_code_cell("#| setup\n" + MAKE_TABLE.strip()),
        new_code_cell("#| api\ndef table() -> pd.DataFrame:\n    return DF\n\n\n"
                      "def ingest(df: pd.DataFrame) -> int:\n    return len(df)"),
    ]
    path = folder / "bench_table.ipynb"
    nbformat.write(nb, path)
    return path


def bodies(folder: Path) -> dict[str, Path]:
    """The request bodies, written once: the table as records, wrapped for nb2api, and Arrow."""
    import pyarrow as pa

    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    df = namespace["DF"]
    records = df.to_json(orient="records", date_format="iso", double_precision=15)
    files = {"records": records.encode(), "wrapped": b'{"df":' + records.encode() + b"}"}
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    files["arrow"] = sink.getvalue().to_pybytes()
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.body"
        paths[name].write_bytes(data)
    return paths


# -- servers and load: bench/run.py's ------------------------------------------------------


def uvicorn_app(factory: str, notebook: Path) -> dict:
    """``start`` arguments for one of this file's factories under uvicorn, like run.py's servers."""
    command = [sys.executable, "-m", "uvicorn", "--factory", f"bench_dataframe:{factory}",
               "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", "{port}",
               "--log-level", "warning", "--no-access-log"]
    return {"name": factory, "command": command, "probe": "/healthz",
            "env": {"BENCH_NOTEBOOK": str(notebook)}}


class Target:
    """One route of one server, with what wrk sends it (headers, a body file)."""

    def __init__(self, server, path: str, label: str, headers: dict[str, str] | None = None,
                 body: Path | None = None) -> None:
        self.server, self.path, self.label = server, path, label
        self.headers, self.body = headers or {}, body

    def script(self, folder: Path) -> str:
        lines = ['wrk.method = "POST"']
        lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in self.headers.items()]
        if self.body is not None:
            lines += [f'local f = io.open("{self.body}", "rb")', "wrk.body = f:read(\"*a\")",
                      "f:close()"]
        path = folder / f"{abs(hash((self.path, self.label)))}.lua"
        path.write_text("\n".join(lines) + "\n")
        return str(path)


def load(target: Target, seconds: float, connections: int, folder: Path) -> float:
    """Requests per second for ``seconds``; every answer must be a 200."""
    import subprocess

    from run import _raise_nofile

    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}",
               f"-d{max(1, round(seconds))}s", "--timeout=20s", "-s", target.script(folder),
               target.server.url + target.path]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         preexec_fn=_raise_nofile, timeout=seconds + 60).stdout
    import re

    if re.search(r"Non-2xx or 3xx responses: (\d+)", out) or "Socket errors" in out:
        raise SystemExit(f"{target.label}: failed requests\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def compare(title: str, ours: Target, theirs: list[Target], options, folder: Path,
            target: str | list[str]) -> list[float]:
    """nb2api against each anchor in alternating rounds; prints medians and ratios (``target``:
    the goal printed after every ratio, or one per anchor)."""
    targets = target if isinstance(target, list) else [target] * len(theirs)
    every = [ours, *theirs]
    for item in every:  # warm up
        load(item, 1, options.connections, folder)
    results: dict[str, list[float]] = {item.label: [] for item in every}
    for r in range(options.rounds):
        order = every if r % 2 == 0 else every[::-1]
        for item in order:
            results[item.label].append(load(item, options.seconds, options.connections, folder))
    print(f"\n{title}")
    for item in every:
        rps = results[item.label]
        print(f"  {item.label:<44} median {statistics.median(rps):8.1f} req/s "
              f"(rounds {', '.join(f'{x:.1f}' for x in rps)})")
    for item, goal in zip(theirs, targets, strict=True):
        ratios = [a / b for a, b in zip(results[ours.label], results[item.label], strict=True)]
        print(f"  ratio nb2api / {item.label:<30} median {statistics.median(ratios):5.2f}x "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x){goal}")
    return results[ours.label]


def http(options) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("the load comes from wrk: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="nb2api-bench-"))
    notebook = write_notebook(folder)
    body = bodies(folder)
    print(f"{ROWS:,} rows x {COLUMNS} columns, {options.connections} connections, "
          f"{options.seconds:g} s per run, {options.rounds} alternating rounds, load from wrk")
    with start(**uvicorn_app("nb2api_app", notebook)) as ours, \
            start(**uvicorn_app("fastapi_app", notebook)) as theirs:
        check(ours, theirs)
        parts = set(options.only.split(","))
        if "plain" in parts:  # both again in processes where pyarrow cannot be imported
            with start(**uvicorn_app("nb2api_app_without_pyarrow", notebook)) as plain, \
                    start(**uvicorn_app("fastapi_app_without_pyarrow", notebook)) as by_hand:
                check_without_pyarrow(ours, plain)
                results_json(plain, by_hand, options, folder, " (neither has pyarrow)")
        if "json" in parts:
            results_json(ours, theirs, options, folder)
        if "arrow" in parts:
            results_arrow(ours, theirs, options, folder)
        if "bodies" in parts:
            requests(ours, theirs, options, folder, body)
    shutil.rmtree(folder, ignore_errors=True)


def results_json(ours, theirs, options, folder: Path, which: str = "") -> None:
    compare(
        f"JSON result (records){which}", Target(ours, "/table", "nb2api -> pd.DataFrame"),
        [Target(theirs, "/table_to_json", "FastAPI df.to_json(double_precision=15)"),
         *([Target(theirs, "/table_to_dict", "FastAPI df.to_dict('records')")]
           if options.to_dict else [])],
        options, folder, "   target >= 1.0x")


def results_arrow(ours, theirs, options, folder: Path) -> None:
    """Arrow against the hand-written Arrow route and against nb2api's own JSON answer of the
    same table, all three in the same alternating rounds."""
    compare(
        "Arrow IPC result", Target(ours, "/table", "nb2api, Accept: arrow", {"Accept": ARROW}),
        [Target(theirs, "/table_arrow", "FastAPI Arrow IPC bytes"),
         Target(ours, "/table", "nb2api JSON (its default)")], options, folder,
        ["   target >= 1.0x", "   target >= 5x"])


def requests(ours, theirs, options, folder: Path, body: dict[str, Path]) -> None:
    compare(
        "JSON body (10,000 records) into a DataFrame",
        Target(ours, "/ingest", "nb2api, {\"df\": [...]}", {"Content-Type": JSON_TYPE},
               body["wrapped"]),
        [Target(theirs, "/ingest_read_json", "FastAPI pd.read_json", {}, body["records"]),
         Target(theirs, "/ingest_from_records", "FastAPI from_records(json.loads)", {},
                body["records"])],
        options, folder, "")
    compare(
        "Arrow IPC body into a DataFrame",
        Target(ours, "/ingest", "nb2api, Content-Type: arrow", {"Content-Type": ARROW},
               body["arrow"]),
        [Target(theirs, "/ingest_arrow", "FastAPI ipc.open_stream().to_pandas()", {},
                body["arrow"])],
        options, folder, "")


JSON_TYPE = "application/json"


def check(ours, theirs) -> None:
    """Both servers answer the same table; nb2api's floats are exact where pandas' are not."""
    import io

    import pyarrow as pa

    a = httpx.post(f"{ours.url}/table", timeout=60)
    b = httpx.post(f"{theirs.url}/table_to_json", timeout=60)
    ours_rows, theirs_rows = a.json(), b.json()
    assert len(ours_rows) == len(theirs_rows) == ROWS
    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    exact = namespace["DF"]["f0"].tolist()
    ours_exact = sum(row["f0"] == x for row, x in zip(ours_rows, exact, strict=True))
    theirs_exact = sum(row["f0"] == x for row, x in zip(theirs_rows, exact, strict=True))
    print(f"JSON response: {len(a.content) / 1e6:.2f} MB (nb2api), {len(b.content) / 1e6:.2f} "
          f"MB (to_json); floats read back exactly: nb2api {ours_exact:,} of {ROWS:,}, "
          f"to_json(double_precision=15) {theirs_exact:,}")
    if ours_exact != ROWS:
        raise SystemExit("nb2api's floats do not round-trip")
    arrow = httpx.post(f"{ours.url}/table", headers={"Accept": ARROW}, timeout=60)
    table = pa.ipc.open_stream(io.BytesIO(arrow.content)).read_all()
    if table.num_rows != ROWS or table.column("f0").to_pylist() != exact:
        raise SystemExit("nb2api's Arrow answer is not the table")
    print(f"Arrow response: {len(arrow.content) / 1e6:.2f} MB")


def check_without_pyarrow(ours, plain) -> None:
    """The server without pyarrow writes the very bytes of the one with it, and refuses Arrow
    with the 406 that names the extra."""
    a = httpx.post(f"{ours.url}/table", timeout=60)
    b = httpx.post(f"{plain.url}/table", timeout=60)
    if a.content != b.content:
        raise SystemExit("nb2api without pyarrow writes other bytes than with it")
    refused = httpx.post(f"{plain.url}/table", headers={"Accept": ARROW}, timeout=60)
    if refused.status_code != 406 or "nb2api[arrow]" not in refused.text:
        raise SystemExit(f"without pyarrow, Arrow is not refused: {refused.status_code}")
    print("JSON without pyarrow: the same bytes; Arrow refused with a 406 naming the extra")


# -- in one process: writers and parsers -----------------------------------------------------


def median_ms(func, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def in_process(options) -> None:
    sys.path.insert(0, str(ROOT))
    import io

    import pandas as pd
    import pyarrow as pa
    from pydantic import TypeAdapter

    from nb2api.serve.jsonbody import loads
    from nb2api.types import frames, records
    from nb2api.types.columnar import ARROW as ARROW_TYPE
    from nb2api.types.columnar import write
    from nb2api.types.datatypes import request_type

    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    df = namespace["DF"]
    per_cell = records.pa
    print("\nIn one process, without HTTP (median ms per call):")

    def without_arrow():
        records.pa = None
        try:
            return frames.frame_json(df)
        finally:
            records.pa = per_cell

    def arrow_by_hand():
        table = pa.Table.from_pandas(df, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    writers = {
        "nb2api frame_json (Arrow kernels join the rows)": lambda: frames.frame_json(df),
        "nb2api frame_json, keyed writer (pyarrow's pandas)": without_arrow,
        "pandas to_json(double_precision=15, iso)": lambda: df.to_json(
            orient="records", double_precision=15, date_format="iso"),
        "nb2api Arrow IPC answer": lambda: write(df, ARROW_TYPE),
        "Arrow IPC by hand (from_pandas, new_stream)": arrow_by_hand,
    }
    for label, func in writers.items():
        print(f"  write  {label:<52} {median_ms(func):7.2f}")
    # Without pyarrow at all (pandas' strings as Python objects): in a process that blocks it.
    import subprocess

    subprocess.run([sys.executable, __file__, "--writers-without-pyarrow",
                    *(["--profile"] if options.profile else [])], check=True)
    text = frames.frame_json(df)
    wrapped = b'{"df":' + text + b"}"
    adapter = TypeAdapter(request_type(pd.DataFrame))
    arrow_body = write(df, ARROW_TYPE)
    readers = {
        "nb2api: body read (orjson) + validated into a DataFrame":
            lambda: adapter.validate_python(loads(wrapped)["df"]),
        "nb2api before: json.loads + validated": lambda: adapter.validate_python(
            json.loads(wrapped)["df"]),
        "pd.read_json(orient='records')": lambda: pd.read_json(io.BytesIO(text), orient="records"),
        "pd.DataFrame.from_records(json.loads(body))":
            lambda: pd.DataFrame.from_records(json.loads(text)),
        "Arrow IPC body -> DataFrame": lambda: pa.ipc.open_stream(arrow_body).read_all()
            .to_pandas(),
    }
    for label, func in readers.items():
        print(f"  read   {label:<52} {median_ms(func):7.2f}")
    if options.profile:
        import cProfile
        import pstats

        print("\nWhere frame_json spends its time (cProfile, 20 calls, by own time):")
        for label, func in (("with pyarrow", lambda: frames.frame_json(df)),
                            ("without pyarrow", without_arrow)):
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                func()
            profiler.disable()
            print(f"  -- {label}")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(6)


def writers_without_pyarrow(profile: bool) -> None:
    """nb2api's JSON writer against pandas' in a process where pyarrow cannot be imported."""
    block_pyarrow()
    sys.path.insert(0, str(ROOT))
    from nb2api.types import frames, records

    assert records.pa is None
    namespace: dict = {}
    exec(MAKE_TABLE, namespace)
    df = namespace["DF"]
    ours, theirs = [], []
    for _ in range(25):  # alternating, CPU time of this thread: steadier on a busy machine
        for times, func in ((ours, lambda: frames.frame_json(df)),
                            (theirs, lambda: df.to_json(orient="records", double_precision=15,
                                                        date_format="iso"))):
            began = time.thread_time()
            func()
            times.append(time.thread_time() - began)
    ratio = statistics.median(b / a for a, b in zip(ours, theirs, strict=True))
    print(f"  write  {'nb2api frame_json without pyarrow (keyed, CPU ms)':<52} "
          f"{statistics.median(ours) * 1000:7.2f}")
    print(f"  write  {'pandas to_json without pyarrow (CPU ms)':<52} "
          f"{statistics.median(theirs) * 1000:7.2f}   nb2api {ratio:.2f}x as fast")
    if profile:
        import cProfile
        import pstats

        print("\nWhere frame_json spends its time without pyarrow (cProfile, 20 calls):")
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20):
            frames.frame_json(df)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(8)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--to-dict", action="store_true",
                        help="also the FastAPI route returning df.to_dict('records')")
    parser.add_argument("--only", default="plain,json,arrow,bodies",
                        help="HTTP parts to run: json and arrow (results), plain (JSON results "
                             "from servers without pyarrow), bodies (requests)")
    parser.add_argument("--skip-http", action="store_true", help="only the in-process part")
    parser.add_argument("--profile", action="store_true", help="cProfile of the JSON writer")
    parser.add_argument("--writers-without-pyarrow", action="store_true",
                        help=argparse.SUPPRESS)  # the in-process part's child
    options = parser.parse_args()
    if options.writers_without_pyarrow:
        return writers_without_pyarrow(options.profile)

    if not options.skip_http:
        http(options)
    in_process(options)


if __name__ == "__main__":
    main()
