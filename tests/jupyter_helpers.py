"""Start a real Jupyter server (or JupyterLab) with the nb2api extension, for the tests.

Every server listens on 127.0.0.1 only, with a token, in a throw-away root directory, with
its own config, runtime and temporary directories so nothing leaks between tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

NOTEBOOKS = Path(__file__).parent / "notebooks"
TOKEN = "nb2api-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebook(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NOTEBOOKS / name, dest)
    return dest


def marked_notebook(cells: list[str]) -> str:
    """A notebook (as JSON text) with one code cell per source, and a kernelspec."""
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell-{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells, start=1)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@dataclass
class JupyterServer:
    process: subprocess.Popen
    url: str  # ends with "/"
    root: Path
    tmp: Path  # TMPDIR of the server, where the extension puts its sockets
    log: Path

    def client(self, token: bool = True) -> httpx.Client:
        headers = {"Authorization": f"token {TOKEN}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_jupyter(
    workdir: Path,
    *,
    app: str = "server",
    poll_interval: float = 0.3,
    base_url: str = "/",
    extra_args: list[str] = (),
    env: dict | None = None,
) -> JupyterServer:
    """Start ``jupyter <app>`` rooted at ``workdir/root`` and wait until it answers."""
    root = workdir / "root"
    tmp = workdir / "tmp"
    for d in (root, tmp, workdir / "config", workdir / "runtime"):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        sys.executable, "-m", "jupyter", app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.base_url={base_url}",
        # enabled by the installed jupyter-config too; explicit so a bare checkout works
        '--ServerApp.jpserver_extensions={"nb2api": True}',
        f"--Nb2ApiExtension.poll_interval={poll_interval}",
        *extra_args,
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    full_env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "JUPYTER_CONFIG_DIR": str(workdir / "config"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        **(env or {}),
    }
    log = workdir / f"jupyter-{app}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, env=full_env, cwd=root, stdout=out, stderr=subprocess.STDOUT
        )
    server = JupyterServer(process, f"http://127.0.0.1:{port}{base_url}", root, tmp, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter {app} exited:\n{server.log_text()}")
        try:
            r = httpx.get(f"{server.url}api/status", params={"token": TOKEN}, timeout=2)
            if r.status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"jupyter {app} did not start:\n{server.log_text()}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
