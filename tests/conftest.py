"""Shared helpers: tiny notebooks built inline, free ports, waiting with a deadline, and real
``nb2api serve`` subprocesses on 127.0.0.1.

A behaviour test builds its notebook next to its assertions::

    def test_adds(make_notebook):
        path = make_notebook("#| api\ndef add(a: int, b: int) -> int:\n    return a + b")
        ...

``make_notebook`` takes cell sources (code cells), :func:`md` for markdown cells and
:func:`code` for a code cell with tags or saved outputs. A file under ``tests/notebooks/``
(:func:`notebook_path`) is for where a real file is the point: a format-3 notebook, a file
that is not a notebook, or a larger notebook that many tests share (``core_types``).

Waiting: no fixed sleeps and no asserts on elapsed time, which fail on a busy machine. Wait
for the event itself with :func:`wait_until` (a deadline, generous) or a
``threading.Event``; a notebook function that must stay busy waits on a gate the test opens.
A server: :func:`serve` (``nb2api serve``), :func:`wait_until_answers` for any other server
(the Jupyter tests' ``jupyter_helpers.start_jupyter``), :func:`free_port` for its port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).parent / "notebooks"
EXAMPLES = Path(__file__).parent.parent / "notebooks"


@pytest.fixture(autouse=True)
def _root_log_level_restored() -> Iterator[None]:
    """An in-process CLI run sets the root logger's level (``--log-level``); a later test's
    ``caplog`` must not depend on which tests ran before it."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
def spans():
    """Spans a traced app finished, exported as they end (the OpenTelemetry SDK's in-memory
    exporter), for the tracing tests."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nb2api.serve import tracing

    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    yield exporter
    tracing.use_exporter(None)


def notebook_path(name: str) -> Path:
    """``tests/notebooks/<name>.ipynb``; fails loudly when the fixture is missing."""
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.is_file(), f"missing test notebook {path}"
    return path


@pytest.fixture
def notebook():
    return notebook_path


def md(source: str) -> NotebookNode:
    """A markdown cell, for :func:`write_notebook`."""
    return nbformat.v4.new_markdown_cell(source)


def code(source: str, *, tags: list[str] | None = None, outputs: list | None = None,
         **metadata) -> NotebookNode:
    """A code cell with tags, saved outputs or other metadata, for :func:`write_notebook`."""
    cell = nbformat.v4.new_code_cell(source, outputs=outputs or [])
    if tags is not None:
        cell.metadata["tags"] = tags
    cell.metadata.update(metadata)
    return cell


def notebook_node(*cells: str | NotebookNode, title: str | None = None) -> NotebookNode:
    """A format-4 notebook of ``cells`` (a string is a code cell's source)."""
    nb = nbformat.v4.new_notebook(
        cells=[code(c) if isinstance(c, str) else c for c in cells],
        metadata={"kernelspec": {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}},
    )
    if title is not None:
        nb.metadata["title"] = title
    return nb


def write_notebook(folder: Path, *cells: str | NotebookNode, name: str = "notebook.ipynb",
                   title: str | None = None) -> Path:
    """Write a notebook of ``cells`` to ``folder/name`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(notebook_node(*cells, title=title), path)
    return path


@pytest.fixture
def make_notebook(tmp_path):
    """``make_notebook(*cells, name=..., title=...)``: a notebook written under ``tmp_path``."""

    def make(*cells: str | NotebookNode, name: str = "notebook.ipynb",
             title: str | None = None) -> Path:
        return write_notebook(tmp_path, *cells, name=name, title=title)

    return make


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition", pause=time.sleep) -> object:
    """Poll ``predicate()`` until it returns something truthy (returned), or fail after
    ``timeout`` seconds. For waiting on an event without a fixed sleep or a timing assert.

    ``pause(seconds)`` waits between polls; a browser test passes one that lets the browser
    work meanwhile (``lambda s: page.wait_for_timeout(s * 1000)``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        pause(interval)


def openapi_operations(app, name: str) -> list[tuple[str, object]]:
    """``(route, operation)`` for each operation of ``app``'s OpenAPI document, as schemathesis
    reads it (``route`` is the operationId); fails when the document has none."""
    import schemathesis

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{name} has no routes"
    return [(op.definition.raw.get("operationId", op.label), op) for op in operations]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen, output, *, timeout: float = 60,
                       params: dict | None = None) -> None:
    """Wait until ``GET url`` answers 200 (a server's readiness), or fail: when ``process``
    exits first (showing ``output()``, what it printed) or after ``timeout`` seconds."""

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[:4]} exited early:\n{output()}")
        try:
            return httpx.get(url, params=params, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=timeout, interval=0.1, message=f"{url} to answer 200")
    except AssertionError as error:
        if process.poll() is not None:
            raise
        raise AssertionError(f"{error}; the server printed:\n{output()}") from None


class Server:
    def __init__(self, process: subprocess.Popen, base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(notebook: Path, *args: str, env: dict[str, str] | None = None,
          ready_timeout: float = 90) -> Iterator[Server]:
    """Run ``nb2api serve NOTEBOOK ARGS`` on a free 127.0.0.1 port until /readyz answers 200.

    When the block fails, what the server printed goes to the test's captured output."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="nb2api-serve-", suffix=".log")[1])
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nb2api", "serve", str(notebook), "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_answers(f"{server.base_url}/readyz", process, server.output,
                           timeout=ready_timeout)
        yield server
    except BaseException:
        print(f"--- nb2api serve {notebook.name} printed:\n{server.output()}")
        raise
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.unlink(missing_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a Jupyter server shows the end of its log (children's output
    included), so a failure in CI can be read without running it again."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            log_text = getattr(value, "log_text", None)
            if callable(log_text):
                report.sections.append((f"{name}: server log, last 8000 characters",
                                        log_text()[-8000:]))
