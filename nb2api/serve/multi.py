"""Several notebooks, one server: each under ``/<name>``, combined at the root.

Each notebook gets the app a single notebook gets (``create_app``: its own namespace, worker
pools, limits, metrics, ``/docs``), served under its prefix: a request to ``/pricing/predict``
reaches the ``pricing`` app as ``/predict`` with ``root_path`` ``/pricing`` (what Starlette's
``Mount`` does), so its token gate, fast path and docs work as they do at the root. The root app
answers ``/healthz``, ``/readyz`` (each notebook's state), ``/metrics`` (every notebook's, with a
``notebook`` label) and the combined ``/docs`` and ``/openapi.json`` (:mod:`.combined`).

:class:`NotebookDispatch`, the root's outermost layer, picks the notebook by the first path
segment from a table that can change while the server runs: under ``--reload`` a notebook added
to the folder goes live, a changed one is swapped in once its new version loads (a broken save
keeps the last good version), and a deleted one stops, without touching the others. The root's
lifespan runs each notebook app's lifespan (Starlette does not run a mounted app's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette._utils import get_route_path
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..errors import NoMarkedCellsError, NotebookError
from ..load import NotebookTarget, Targets, combined_version, parse_targets
from ..load.folder import RESERVED_NAMES, check_name, is_notebook_file, name_for
from ..settings import Settings
from .auth import require_token
from .combined import combine
from .docs import mount_docs
from .health import not_ready_reason
from .metrics import CONTENT_TYPE, metrics_notebook
from .middleware import RequestMiddleware, RootPath
from .reload import Serving

logger = logging.getLogger("nb2api")

Load = Callable[[Path, Settings], FastAPI]
"""Builds one notebook's app (``create_app``); raises :class:`NotebookError`."""

Several = Sequence[str | Path] | Mapping[str, str | Path]


def is_several(notebook: Any) -> bool:
    """Whether ``create_app``'s argument names several notebooks: a list, a mapping of prefix
    to path, or a folder."""
    if isinstance(notebook, list | tuple | Mapping):
        return True
    return isinstance(notebook, str | Path) and Path(notebook).is_dir()


def targets_of(notebooks: Several | str | Path) -> Targets:
    if isinstance(notebooks, Mapping):
        return parse_targets([f"{name}={path}" for name, path in notebooks.items()])
    if isinstance(notebooks, str | Path):
        return parse_targets([str(notebooks)])
    return parse_targets([str(path) for path in notebooks])


@dataclass
class NotebookState:
    """One notebook of the server: the version serving (if any) and what went wrong."""

    name: str
    path: Path
    serving: Serving | None = None
    error: str | None = None  # why it is not served (it never loaded)
    reload_error: str | None = None  # why its last save is not served (the last good one is)

    def describe(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"notebook": self.path.name}  # /readyz is open: no folders
        if self.serving is None:
            return {"status": "broken", "reason": self.error, **entry}
        app = self.serving.app
        reason = not_ready_reason(list(app.state.runtime.pools.values()))
        entry = {"status": "ready" if reason is None else "not ready", **entry,
                 "version": app.state.version, "routes": len(app.state.routes)}
        if reason is not None:
            entry["reason"] = reason
        if self.reload_error is not None:
            entry["reload_error"] = self.reload_error
        return entry


class Notebooks:
    """The notebooks one server serves, by prefix; :meth:`build` makes the root app."""

    def __init__(self, settings: Settings, load: Load, targets: Targets, *, reload: bool = False,
                 changes: Callable[[list[Path]], Any] | None = None) -> None:
        self.settings = settings
        self.notebook_settings = settings.updated(root_path="")  # the root's prefix is enough
        self.load = load
        self.folders = tuple(folder.resolve() for folder in targets.folders)
        self.files = tuple(t.path.resolve() for t in targets.notebooks)
        self.names = {t.path.resolve(): t.name for t in targets.notebooks}  # NAME=PATH kept
        self.states: dict[str, NotebookState] = {}
        self.live: dict[str, Serving] = {}  # what the dispatcher reads, per request
        self.reload = reload
        self.changes = changes or _changes
        self.version = ""
        self._stopping: set[asyncio.Task[None]] = set()
        self._documents: tuple[tuple[str, str | None], ...] | None = None
        self._document: dict[str, Any] = {}

    @classmethod
    def build(cls, notebooks: Several | str | Path | Targets, settings: Settings, load: Load, *,
              reload: bool = False, changes: Callable[[list[Path]], Any] | None = None,
              ) -> FastAPI:
        """Load every notebook and return the root app. Raises :class:`NotebookError` for a
        notebook that cannot be served, unless ``settings.skip_broken`` (then it is logged and
        listed in ``/readyz``), and when none can be."""
        if isinstance(notebooks, Targets):
            targets = notebooks  # the caller has said which were skipped
        else:
            targets = targets_of(notebooks)
            for skipped in targets.skipped:
                logger.info("nb2api: skipped %s: %s", skipped.path, skipped.reason)
        if not targets.notebooks:
            where = ", ".join(str(f) for f in targets.folders) or "the arguments"
            raise NoMarkedCellsError(
                "no notebook to serve: none has a cell marked setup or api", path=where)
        server = cls(settings, load, targets, reload=reload, changes=changes)
        for target in targets.notebooks:
            server._load_at_start(target)
        if not server.live:
            raise NotebookError("none of the notebooks can be served (see the errors above)")
        return server.app()

    def _load_at_start(self, target: NotebookTarget) -> None:
        state = self.states[target.name] = NotebookState(target.name, target.path.resolve())
        logger.debug("nb2api: loading %s as /%s", target.path, target.name)
        labelled = metrics_notebook.set(target.name)  # its metrics under --workers N
        try:
            app = self.load(target.path, self.notebook_settings)
        except NotebookError as error:
            if not self.settings.skip_broken:
                raise
            state.error = str(error)
            logger.error("not serving /%s: %s", target.name, error)
            return
        finally:
            metrics_notebook.reset(labelled)
        state.serving = self.live[target.name] = Serving(app)
        self._changed()

    # -- the root app ---------------------------------------------------------------------

    def app(self) -> FastAPI:
        settings = self.settings

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            for serving in list(self.live.values()):
                await serving.start()
            watcher = (asyncio.create_task(self._watch(), name="nb2api-reload-folder")
                       if self.reload else None)
            try:
                yield
            finally:
                if watcher is not None:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                await asyncio.gather(*(s.stop() for s in self.live.values()), *self._stopping)

        root = FastAPI(title=f"nb2api: {len(self.states)} notebooks", version=__version__,
                       docs_url=None, redoc_url=None, lifespan=lifespan)
        root.state.notebooks = self
        root.state.settings = settings
        root.openapi = self.openapi  # type: ignore[method-assign]
        mount_docs(root)
        self._mount_operations(root)
        if settings.cors_origins:  # the root's documents, for a browser elsewhere
            root.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                allow_methods=["GET"], allow_headers=["*"], max_age=600)
        root.add_middleware(RequestMiddleware, metrics=None, log=settings.access_log,
                            max_body_size=settings.max_body_size)
        root.add_middleware(NotebookDispatch, notebooks=self)  # outside the root's own layers
        if settings.root_path:
            root.add_middleware(RootPath, root_path=settings.root_path)
        return root

    def _mount_operations(self, root: FastAPI) -> None:
        token = self.settings.bearer_token()
        auth = require_token(token) if token else None

        @root.get("/healthz", include_in_schema=False)
        async def healthz() -> Response:
            return Response(b'{"status":"ok"}', media_type="application/json")

        @root.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            return self.readiness()

        if self.settings.metrics:
            async def metrics() -> Response:
                return Response(self.render_metrics(), media_type=CONTENT_TYPE)

            root.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False,
                               dependencies=[auth.depends] if auth is not None else None)

    def readiness(self) -> JSONResponse:
        """200 while every notebook that serves is ready; a broken one (``--skip-broken``) is
        listed, not counted. 503 when no notebook is ready."""
        notebooks = {name: state.describe() for name, state in sorted(self.states.items())}
        served = [entry for entry in notebooks.values() if entry["status"] != "broken"]
        ready = [entry for entry in served if entry["status"] == "ready"]
        status = ("ready" if served and len(ready) == len(served)
                  else "partly ready" if ready else "not ready")
        broken = sorted(name for name, entry in notebooks.items() if entry["status"] == "broken")
        body: dict[str, Any] = {"status": status, "notebooks": notebooks}
        if broken:
            body["broken"] = broken
        return JSONResponse(body, status_code=200 if ready else 503)

    def render_metrics(self) -> bytes:
        metrics = [(name, s.app.state.runtime.metrics) for name, s in sorted(self.live.items())]
        metrics = [(name, m) for name, m in metrics if m is not None]
        if metrics and metrics[0][1].registry is None:
            # --workers N: every process's values, in the files they share, each labelled
            # with its notebook where it was made (metrics_notebook).
            return metrics[0][1].render()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Labelled(metrics))
        return generate_latest(registry)

    def openapi(self) -> dict[str, Any]:
        """The combined document, made again when a notebook changed."""
        key = tuple((name, state.serving.app.state.version if state.serving else state.error)
                    for name, state in sorted(self.states.items()))
        if key != self._documents:
            documents = {name: s.app.openapi() for name, s in sorted(self.live.items())}
            tags = {}
            for name, serving in sorted(self.live.items()):
                app = serving.app
                tags[name] = (f"{app.title}: notebook `{app.state.notebook.notebook.path.name}`, "
                              f"version `{app.state.version}`; its own docs at "
                              f"[{name}/docs]({name}/docs)")
            lines = [f"- `/{name}`: {state.describe()['status']}"
                     + (f" ({state.error})" if state.error else "")
                     for name, state in sorted(self.states.items())]
            info = {"title": f"nb2api: {len(documents)} notebooks", "version": __version__,
                    "description": "Served by nb2api, each notebook under its own prefix:\n\n"
                    + "\n".join(lines)}
            self._document = combine(documents, info, tags)
            self._documents = key
        return self._document

    def _changed(self) -> None:
        self.version = combined_version(
            {name: s.app.state.version for name, s in self.live.items()})

    # -- a live folder (--reload) -----------------------------------------------------------

    async def _watch(self) -> None:
        places = sorted({*self.folders, *(path.parent for path in self.files)})
        async for paths in self.changes(places):
            for path in sorted(paths):
                try:
                    await self.refresh(path)
                except Exception:  # one notebook's trouble must not end the watching
                    logger.exception("nb2api: could not reload %s", path)

    def _watched(self, path: Path) -> bool:
        return path in self.files or (path.parent in self.folders and path.suffix == ".ipynb"
                                      and not path.name.startswith("."))

    async def refresh(self, path: Path) -> None:
        """Bring ``path``'s notebook up to date: start, reload or stop it."""
        path = path.resolve()
        state = next((s for s in self.states.values() if s.path == path), None)
        if state is None and not self._watched(path):
            return
        if not is_notebook_file(path):
            if state is not None:
                await self.remove(state.name)
            return
        if state is None:
            name = self.names.get(path) or name_for(path.stem)
            try:
                check_name(name, str(path))
            except NotebookError as error:
                logger.error("not serving %s: %s", path, error)
                return
            if name in self.states or name.lower() in RESERVED_NAMES:
                logger.error("not serving %s: /%s is taken", path, name)
                return
        else:
            name = state.name
        logger.info("nb2api: %s changed; loading it", path.name)
        labelled = metrics_notebook.set(name)  # the load's thread runs in a copy of this context
        try:
            app = await asyncio.to_thread(self.load, path, self.notebook_settings)
        except NoMarkedCellsError as error:
            if state is None:
                logger.info("nb2api: skipped %s: no cell is marked setup or api", path)
                return
            self._failed(name, path, state, error)
            return
        except NotebookError as error:
            self._failed(name, path, state, error)
            return
        finally:
            metrics_notebook.reset(labelled)
        serving = Serving(app)
        try:
            await serving.start()
        except Exception:
            logger.exception("nb2api: the new version of %s failed to start", path.name)
            return
        if state is None:
            state = self.states[name] = NotebookState(name, path)
        old, state.serving = state.serving, serving
        state.error = state.reload_error = None
        self.live[name] = serving
        self._changed()
        logger.info("nb2api: %s /%s (version %s)", "reloaded" if old else "now serving", name,
                    app.state.version)
        if old is not None:
            self._stop_later(old)

    def _failed(self, name: str, path: Path, state: NotebookState | None,
                error: NotebookError) -> None:
        if state is not None and state.serving is not None:
            state.reload_error = str(error)
            logger.error("nb2api: %s; still serving the last version of /%s that loaded",
                         error, name)
            return
        self.states[name] = NotebookState(name, path, error=str(error))
        logger.error("not serving /%s: %s", name, error)

    async def remove(self, name: str) -> None:
        state = self.states.pop(name)
        serving = self.live.pop(name, None)
        self._changed()
        logger.info("nb2api: %s was removed; /%s stopped", state.path.name, name)
        if serving is not None:
            self._stop_later(serving)

    def _stop_later(self, serving: Serving) -> None:
        stopping = asyncio.create_task(serving.stop())  # once its requests finish
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)


class NotebookDispatch:
    """Pure ASGI: ``/<name>/...`` goes to that notebook's app, the rest to the root app.

    The notebook's app sees the request as a mounted app does: its path below the prefix,
    ``root_path`` ending in ``/<name>``. ``/<name>`` alone redirects to ``/<name>/docs``."""

    def __init__(self, app: ASGIApp, notebooks: Notebooks) -> None:
        self.app = app
        self.notebooks = notebooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        name, slash, rest = path[1:].partition("/")
        serving = self.notebooks.live.get(name)
        if serving is None:
            await self.app(scope, receive, self._versioned(send))
            return
        root = scope.get("root_path", "") + "/" + name
        if not slash and scope["type"] == "http":
            await RedirectResponse(root + "/docs")(scope, receive, self._versioned(send))
            return
        scope = {**scope, "root_path": root, "path": root + "/" + rest}
        await serving(scope, receive, send)

    def _versioned(self, send: Send) -> Send:
        """The root's answers carry the version of the set of notebooks being served."""
        header = (b"x-notebook-version", self.notebooks.version.encode())

        async def send_versioned(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        return send_versioned


class _Labelled(Collector):
    """Every notebook's metrics, each sample labelled with its notebook, one family per name
    (each notebook app keeps its own registry: nothing is registered twice)."""

    def __init__(self, metrics: list[tuple[str, Any]]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        for name, metrics in self.metrics:
            for family in metrics.registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit)
                merged.samples += [sample._replace(labels={"notebook": name, **sample.labels})
                                   for sample in family.samples]
        return list(families.values())


async def _changes(places: list[Path]) -> AsyncIterator[set[Path]]:
    """Yield the notebook files changed (added, saved, removed) in ``places``, per batch."""
    import watchfiles

    async for changes in watchfiles.awatch(
        *places, watch_filter=lambda _, path: path.endswith(".ipynb"),
        debounce=200, step=50, recursive=False,
    ):
        yield {Path(path) for _, path in changes}
