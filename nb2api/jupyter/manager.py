"""Serve notebooks from inside a Jupyter server: one ``nb2api serve`` child per notebook.

Each served notebook runs in its own process, listening on a unix socket that only the
Jupyter server reaches (through ``AppProxyHandler``), so Jupyter's authentication guards
the API and no TCP port bypasses it. A child loads the notebook before it listens, so
"ready" means the setup cells ran.

Reload keeps the last good version: the new child starts on a new socket and must answer
``/readyz`` before it replaces the old one; if it fails, the old child keeps serving and
the failure is kept as the app's ``error``. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from jupyter_server.utils import url_path_join

from ..settings import Settings

_STDERR_LINES_KEPT = 50
_LINE_LIMIT = 4 * 1024 * 1024  # a JSON log line carries a whole traceback
ERRORS_KEPT = 50  # the last errors of a served notebook, for the API panel

# A frame of notebook code in a traceback: ``File "<name cell 4>", line 2`` (load/kernel.py).
_CELL_FRAME = re.compile(r'File "<.* cell (?P<cell>\d+)>", line (?P<line>\d+)')
# The cell a load error names: ``nb.ipynb: cell 4 ("def f(x: Foo):"), line 2: ...``.
_ERROR_CELL = re.compile(r'\bcell (?P<cell>\d+)(?: \(".*?"\))?(?:, line (?P<line>\d+))?')


class ServeError(Exception):
    """A notebook could not be served; ``str()`` is the one-line message for the user."""


class PathRefused(Exception):
    """A notebook path that must not be served: outside the root, hidden, or missing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class _Child:
    """One ``nb2api serve --uds`` process and the socket it listens on."""

    process: asyncio.subprocess.Process
    socket: Path
    stderr_tail: deque[str]
    readers: list[asyncio.Task[None]]

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


@dataclass
class ServedApp:
    """A notebook being served: its current child and the outcome of the last load."""

    id: str
    path: str  # the notebook's path relative to the server root, "/"-separated
    file: Path
    prefix: str  # the URL path the app lives under, e.g. "/nb2api/apps/<id>"
    child: _Child | None = None
    error: str | None = None
    stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the version last tried
    started: float = field(default_factory=time.time)
    reloaded: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    errors: deque[RouteError] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))

    @property
    def socket(self) -> Path | None:
        return self.child.socket if self.child is not None and self.child.alive else None

    def to_json(self) -> dict[str, object]:
        running = self.child is not None and self.child.alive
        error = self.error
        if not running and error is None and self.child is not None:
            error = _exit_message(self.child)
        return {
            "id": self.id,
            "path": self.path,
            "url": self.prefix + "/",
            "docs_url": self.prefix + "/docs",
            "mcp_url": self.prefix + "/mcp",  # its functions as MCP tools (Streamable HTTP)
            "status": "running" if running else "stopped",
            "pid": self.child.process.pid if running and self.child is not None else None,
            "error": error,
            "error_cell": _error_cell(error),
            "started": self.started,
            "reloaded": self.reloaded,
        }


@dataclass(frozen=True)
class RouteError:
    """A 500 of a served notebook, read from its child's JSON log line: the traceback stays
    in Jupyter (the API panel shows it), never in the app's HTTP response."""

    time: str
    route: str | None
    error_id: str
    message: str  # the exception's one line, ``KeyError: 'petal'``
    traceback: str
    cell: int | None  # 1-based, every cell counted, where the exception was raised
    line: int | None

    @classmethod
    def from_log_line(cls, text: str) -> RouteError | None:
        """The error a child's JSON log line records, or None for any other line."""
        if not text.startswith("{") or '"error_id"' not in text:
            return None
        try:
            entry = json.loads(text)
        except ValueError:
            return None
        if not isinstance(entry, dict) or entry.get("level") != "error":
            return None
        error_id, traceback = entry.get("error_id"), entry.get("traceback")
        if not isinstance(error_id, str) or not isinstance(traceback, str):
            return None
        frames = list(_CELL_FRAME.finditer(traceback))
        last = frames[-1] if frames else None  # the innermost frame in notebook code
        lines = [line for line in traceback.splitlines() if line.strip()]
        route = entry.get("route")
        return cls(
            time=str(entry.get("time", "")),
            route=route if isinstance(route, str) else None,
            error_id=error_id,
            message=lines[-1].strip() if lines else "",
            traceback=traceback,
            cell=int(last["cell"]) if last else None,
            line=int(last["line"]) if last else None,
        )

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _error_cell(message: str | None) -> dict[str, int | None] | None:
    """``{"cell", "line"}`` of the cell a load error names, for a link to it."""
    match = _ERROR_CELL.search(message) if message else None
    if match is None:
        return None
    line = match["line"]
    return {"cell": int(match["cell"]), "line": int(line) if line else None}


def _stat_stamp(file: Path) -> tuple[int, int] | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _exit_message(child: _Child) -> str:
    """The child's last stderr line: ``nb2api serve`` prints one line on exit 2."""
    lines = [line for line in child.stderr_tail if line.strip()]
    code = child.process.returncode
    if code == 2 and lines:
        return lines[-1]
    detail = f": {lines[-1]}" if lines else ""
    return f"nb2api serve exited with code {code}{detail}"


async def _drain(child: _Child, timeout: float = 2.0) -> None:
    """Let the output relays finish; a grandchild may hold the pipes open, so bound it."""
    _, pending = await asyncio.wait(child.readers, timeout=timeout)
    for task in pending:
        task.cancel()


async def _http_status(socket: Path, path: str, timeout: float = 2.0) -> int | None:
    """GET ``path`` over a unix socket; the status code, or None if nobody answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


class AppManager:
    """Starts, reloads and stops the served notebooks of one Jupyter server."""

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        base_url: str = "/",
        *,
        allow_hidden: bool = False,
        startup_timeout: float = 120.0,
        stop_timeout: float = 5.0,
        poll_interval: float = 1.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(root_dir))
        self.base_url = base_url
        self.allow_hidden = allow_hidden
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.log = log or logging.getLogger("nb2api.jupyter")
        # The children's body limit, given to them explicitly: the proxy enforces it first.
        try:
            self.max_body_size: int | None = Settings().max_body_size
        except ValueError:  # a bad NB2API_* variable: each child says which, and exits
            self.max_body_size = None
        self.apps: dict[str, ServedApp] = {}
        self._socket_dir: Path | None = None
        self._generation = 0
        self._watcher: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    # ---- paths -------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[str, Path]:
        """Map a notebook path relative to the server root to a file under the root.

        Refuses (``PathRefused``) absolute paths, ``..``, hidden files unless allowed,
        symlinks that lead outside the root, and anything that is not an existing
        ``.ipynb`` file.
        """
        if not isinstance(path, str) or not path.strip("/"):
            raise PathRefused(400, "a notebook path is required")
        if "\\" in path or "\x00" in path:
            raise PathRefused(404, f"no such notebook: {path}")
        parts = PurePosixPath(path.strip("/")).parts
        if any(part in ("..", ".") for part in parts):
            raise PathRefused(403, "the notebook must be inside the server's root directory")
        if not self.allow_hidden and any(part.startswith(".") for part in parts):
            raise PathRefused(404, f"no such notebook: {path}")
        file = Path(os.path.realpath(self.root.joinpath(*parts)))
        if not file.is_relative_to(self.root):
            raise PathRefused(403, "the notebook must be inside the server's root directory")
        if file.suffix != ".ipynb" or not file.is_file():
            raise PathRefused(404, f"no such notebook: {path}")
        return "/".join(parts), file

    def app_id(self, relpath: str) -> str:
        """A stable id per notebook path, so a served notebook keeps its URL."""
        return hashlib.sha1(relpath.encode()).hexdigest()[:12]

    def get(self, app_id: str) -> ServedApp | None:
        return self.apps.get(app_id)

    # ---- serve / reload / stop ---------------------------------------------------

    async def serve(self, path: str) -> ServedApp:
        """Serve the notebook at ``path``, or reload it if it changed since the last try.

        Raises ``PathRefused`` for a path that must not be served and ``ServeError`` when
        the notebook is not served yet and cannot be. A served notebook whose new
        version fails keeps serving its last good version; the failure is in ``error``.
        """
        relpath, file = self.resolve(path)
        app_id = self.app_id(relpath)
        app = self.apps.get(app_id)
        if app is not None:
            await self.reload(app)
            return app
        app = ServedApp(
            id=app_id,
            path=relpath,
            file=file,
            prefix=url_path_join(self.base_url, "nb2api", "apps", app_id),
        )
        async with app.lock:
            app.stamp = _stat_stamp(file)
            app.child = await self._start_child(app)  # ServeError: nothing registered
            if app_id in self.apps:  # a concurrent request won the race: keep its app
                await self._stop_child(app.child)
                return self.apps[app_id]
            self.apps[app_id] = app
        self._ensure_watcher()
        self.log.info("nb2api: serving %s at %s/", relpath, app.prefix)
        return app

    async def reload(self, app: ServedApp) -> None:
        """Load the notebook's current version into a new child and swap it in.

        Does nothing if the file is unchanged since the last try and its child runs.
        """
        async with app.lock:
            if app.id not in self.apps:
                return  # stopped meanwhile
            stamp = _stat_stamp(app.file)
            running = app.child is not None and app.child.alive
            if stamp == app.stamp and running:
                return
            app.stamp = stamp
            try:
                new = await self._start_child(app)
            except ServeError as exc:
                app.error = str(exc)
                self.log.warning("nb2api: kept the last good version of %s: %s", app.path, exc)
                return
            old, app.child = app.child, new
            app.error = None
            app.reloaded = time.time()
            self.log.info("nb2api: reloaded %s", app.path)
        if old is not None:
            await self._stop_child(old)

    async def stop(self, app_id: str) -> bool:
        app = self.apps.pop(app_id, None)
        if app is None:
            return False
        async with app.lock:
            if app.child is not None:
                await self._stop_child(app.child)
        self.log.info("nb2api: stopped serving %s", app.path)
        return True

    async def stop_all(self) -> None:
        """Stop every child and the watcher; remove the socket directory."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*(self.stop(app_id) for app_id in list(self.apps)))
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def kill_all(self) -> None:
        """Last resort at interpreter exit: signal children without an event loop."""
        for app in self.apps.values():
            if app.child is not None:
                _kill_group(app.child.process.pid, signal.SIGKILL)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    # ---- watching for saves ------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._watcher is None and self.poll_interval > 0:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """Reload a served notebook when its file changes, whoever saved it."""
        while True:
            await asyncio.sleep(self.poll_interval)
            for app in list(self.apps.values()):
                if app.lock.locked():
                    continue
                if _stat_stamp(app.file) not in (app.stamp, None):
                    task = asyncio.ensure_future(self.reload(app))
                    self._reloads.add(task)
                    task.add_done_callback(self._reloads.discard)

    # ---- child processes ---------------------------------------------------------

    def _new_socket(self, app: ServedApp) -> Path:
        if self._socket_dir is None:
            # Short and private: unix socket paths are limited to about 100 bytes.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="nb2api-"))
        self._generation += 1
        return self._socket_dir / f"{app.id}-{self._generation}.sock"

    async def _start_child(self, app: ServedApp) -> _Child:
        socket = self._new_socket(app)
        cmd = [
            # relative to the child's working directory, so that errors name the
            # notebook as the user sees it, like `nb2api check`
            sys.executable, "-m", "nb2api", "serve", app.file.name,
            "--uds", str(socket),
            "--root-path", app.prefix,
            "--log-level", "warning",
            "--log-format", "json",  # the API panel reads the errors from these lines
        ]  # fmt: skip
        if self.max_body_size is not None:
            cmd += ["--max-body-size", str(self.max_body_size)]
        self.log.debug("nb2api: starting %s", cmd)
        process = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=str(app.file.parent),  # setup cells read files next to the notebook
            env=_child_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a group of its own, killed whole on stop
            limit=_LINE_LIMIT,
        )
        tail: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.ensure_future(self._relay(process.stdout, app, None)),
            asyncio.ensure_future(self._relay(process.stderr, app, tail)),
        ]
        child = _Child(process=process, socket=socket, stderr_tail=tail, readers=readers)
        try:
            await self._wait_ready(child)
        except ServeError as exc:
            await self._stop_child(child)
            # name the notebook by its path in Jupyter's file browser, not on disk
            raise ServeError(str(exc).replace(str(app.file), app.path)) from None
        except BaseException:
            await self._stop_child(child)
            raise
        return child

    async def _relay(
        self, stream: asyncio.StreamReader, app: ServedApp, tail: deque[str] | None
    ) -> None:
        """Forward a child's output to the server log (keeping stderr's last lines, and the
        errors its JSON log records for the API panel)."""
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if tail is not None:
                tail.append(text)
                error = RouteError.from_log_line(text)
                if error is not None:
                    app.errors.append(error)
            self.log.info("nb2api[%s]: %s", app.path, text)

    async def _wait_ready(self, child: _Child) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not child.alive:
                await _drain(child)
                raise ServeError(_exit_message(child))
            if child.socket.exists() and await _http_status(child.socket, "/readyz") == 200:
                return
            await asyncio.sleep(0.1)
        raise ServeError(f"the notebook was not ready after {self.startup_timeout:g} s")

    async def _stop_child(self, child: _Child) -> None:
        """SIGTERM, ``stop_timeout`` seconds to finish, then SIGKILL to all the child started.

        The child leads a process group of its own (its pool workers, anything the notebook
        started), so nothing of the app outlives its stop. Its exit is watched by its return
        code, not by its pipes, which a grandchild may hold open.
        """
        if child.alive:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            await _exited(child, self.stop_timeout)
        _kill_group(child.process.pid, signal.SIGKILL)
        await _exited(child, self.stop_timeout)
        await _drain(child)
        with contextlib.suppress(OSError):
            child.socket.unlink()


async def _exited(child: _Child, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while child.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not child.alive


def _kill_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# Secrets of Jupyter, JupyterHub and nb2api that a child (and the notebook code it runs, and
# what that starts) has no use for: the child's routes sit behind Jupyter's own login.
_SECRET_VARIABLES = frozenset({
    "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JPY_API_TOKEN", "JUPYTERHUB_API_TOKEN",
    "NB2API_TOKEN", "NB2API_TOKEN_FILE",
})


def _child_environment() -> dict[str, str]:
    """The Jupyter server's environment, less :data:`_SECRET_VARIABLES`."""
    return {name: value for name, value in os.environ.items() if name not in _SECRET_VARIABLES}
