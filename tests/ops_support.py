"""Helpers for the operations tests: notebooks by name, log capture, real servers."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from nb2api.logs import JSONFormatter

NOTEBOOKS = Path(__file__).parent / "notebooks"
EXAMPLES = Path(__file__).parent.parent / "notebooks"


def ops_notebook(name: str) -> Path:
    path = NOTEBOOKS / f"ops_{name}.ipynb"
    assert path.is_file(), f"missing test notebook {path}"
    return path


@contextlib.contextmanager
def json_logs(level: int = logging.DEBUG) -> Iterator[list[dict]]:
    """Collect what the ``nb2api`` and notebook loggers write, formatted as nb2api's JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(notebook: Path, *args: str, start_timeout: float = 90.0,
          env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """Run ``nb2api serve`` on a free 127.0.0.1 port; yield its base URL and its log file."""
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"nb2api-ops-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nb2api", "serve", str(notebook), "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"nb2api serve exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nb2api serve not ready in time:\n{log.read_text()}")
            time.sleep(0.2)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)
