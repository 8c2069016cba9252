"""Helpers for the operations tests: notebooks by name, log capture, real servers."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from conftest import EXAMPLES, NOTEBOOKS  # noqa: F401 (EXAMPLES is for the ops tests)
from conftest import serve as serve_process

from nb2api.serve.logs import JSONFormatter


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


@contextlib.contextmanager
def serve(notebook: Path, *args: str, start_timeout: float = 90.0,
          env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """Run ``nb2api serve`` on a free 127.0.0.1 port; yield its base URL and its log file."""
    with serve_process(notebook, *args, env=env, ready_timeout=start_timeout) as server:
        yield server.base_url, server.log
