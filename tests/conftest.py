"""Shared fixtures: notebooks by name, free ports, and real ``nb2api serve`` subprocesses."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
EXAMPLES = Path(__file__).parent.parent / "notebooks"


def notebook_path(name: str) -> Path:
    """``tests/notebooks/<name>.ipynb``; fails loudly when the fixture is missing."""
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.is_file(), f"missing test notebook {path}"
    return path


@pytest.fixture
def notebook():
    return notebook_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        return self.log.read_text()


@contextlib.contextmanager
def serve(notebook: Path, *args: str, env: dict[str, str] | None = None,
          ready_timeout: float = 60) -> Iterator[Server]:
    """Run ``nb2api serve NOTEBOOK ARGS`` on a free 127.0.0.1 port until /readyz answers 200."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="nb2api-serve-", suffix=".log")[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "nb2api", "serve", str(notebook), "--host", "127.0.0.1",
         "--port", str(port), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    base_url = f"http://127.0.0.1:{port}"
    server = Server(process, base_url, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"nb2api serve exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("nb2api serve did not become ready in time")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
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
