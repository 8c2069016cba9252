"""Helpers for the operations tests: log capture, and the ops notebooks by name.

Servers, ports, waiting and inline notebooks are conftest's (``serve``, ``free_port``,
``wait_until``, ``make_notebook``)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from conftest import notebook_path

from nb2api.serve.logs import JSONFormatter


def ops_notebook(name: str) -> Path:
    """``tests/notebooks/ops_<name>.ipynb``."""
    return notebook_path(f"ops_{name}")


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
