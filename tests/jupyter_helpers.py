"""Start a real Jupyter server (or JupyterLab) with the nb2api extension, for the tests.

Every server listens on 127.0.0.1 only, with a token, in a throw-away root directory, with
its own config, runtime and temporary directories so nothing leaks between tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import free_port, md, wait_until_answers, write_notebook

TOKEN = "nb2api-test-token"

# The notebooks the Jupyter tests serve: one that works, one that cannot be served.
GREETER = (
    md("# Greeter\nServed by the JupyterLab button tests."),
    "#| setup\nGREETING = 'hello'",
    "#| api\ndef add(a: int, b: int = 1) -> int:\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n\n"
    "#| route: GET /hello/{name}\ndef hello(name: str) -> str:\n    return f'{GREETING} {name}'",
    "print('exploration, never run by the service')",
)
BROKEN = ("#| setup\nimport math", "#| api\ndef f(x: Foo) -> int:\n    return 1")


def put_notebook(dest: Path, *cells) -> Path:
    """Write a notebook of ``cells`` (see conftest) at ``dest``, creating its folder."""
    return write_notebook(dest.parent, *cells, name=dest.name)


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
    try:
        wait_until_answers(f"{server.url}api/status", process, server.log_text, timeout=90,
                           params={"token": TOKEN})
    except AssertionError:
        server.stop()
        raise
    return server


def start_lab(workdir: Path, *, env: dict | None = None, **options) -> JupyterServer:
    """``jupyter lab`` (see :func:`start_jupyter`) with its own settings and workspaces, and
    without the news pop-up and the update check: they would cover the toolbar and go online."""
    settings = workdir / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    lab_env = {
        "JUPYTERLAB_SETTINGS_DIR": str(workdir / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
        **(env or {}),
    }
    return start_jupyter(workdir, app="lab", env=lab_env, **options)


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


@contextlib.contextmanager
def api_client(server: JupyterServer) -> Iterator[httpx.Client]:
    """A client of ``server``'s REST API that stops every served notebook when the test ends."""
    with server.client() as client:
        yield client
        for app in client.get("nb2api/api/apps").json():
            client.delete(f"nb2api/api/apps/{app['id']}")
