"""``nb2api serve --reload``: a new version of the notebook replaces the app only once it loads.

One ASGI app that holds the current notebook app. A watcher task (``watchfiles``) sees the
notebook saved, loads it again off the event loop, starts the new app's lifespan and swaps it
in; the old app finishes the requests it has, then stops. A save that cannot be served (a
syntax error, a setup cell that raises) is logged, naming the cell, and the last good version
keeps answering, as the Jupyter button's reload does. Nothing is half swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ..errors import NotebookError

logger = logging.getLogger("nb2api")


class Serving:
    """One version of the app, its lifespan, and the requests it is answering."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.lifespan = contextlib.AsyncExitStack()

    async def start(self) -> None:
        await self.lifespan.enter_async_context(self.app.router.lifespan_context(self.app))

    async def stop(self) -> None:
        await self.idle.wait()  # its requests finish first
        await self.lifespan.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with this version, counted, so that :meth:`stop` waits for the answer."""
        self.active += 1
        self.idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()


class ReloadingApp:
    """The notebook's app, replaced by :func:`load` 's next result each time the file changes.

    ``load(path)`` builds the app (``create_app``) and raises :class:`NotebookError` when the
    notebook cannot be served; ``changes`` yields once per save (tests give their own).
    """

    def __init__(self, app: FastAPI, notebook: Path, load: Callable[[Path], FastAPI],
                 changes: Callable[[Path], Any] | None = None) -> None:
        self.current = Serving(app)
        self.notebook = notebook
        self.load = load
        self.changes = changes or _saves
        self._watcher: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.current(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.current.start()
        except BaseException as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            raise
        self._watcher = asyncio.create_task(self._watch(), name="nb2api-reload")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await asyncio.gather(self.current.stop(), *self._stopping)
        await send({"type": "lifespan.shutdown.complete"})

    async def _watch(self) -> None:
        async for _ in self.changes(self.notebook):
            await self.reload()

    async def reload(self) -> bool:
        """Load the notebook again and swap it in; False (the error logged) if it fails."""
        logger.info("nb2api: %s changed; reloading", self.notebook.name)
        try:
            app = await asyncio.to_thread(self.load, self.notebook)
        except NotebookError as error:
            logger.error("nb2api: %s; still serving the last version that loaded", error)
            return False
        serving = Serving(app)
        try:
            await serving.start()
        except Exception:
            logger.exception("nb2api: the new version of %s failed to start; still serving "
                             "the last version that loaded", self.notebook.name)
            return False
        old, self.current = self.current, serving
        logger.info("nb2api: reloaded %s", self.notebook.name)
        stopping = asyncio.create_task(old.stop())  # the next save need not wait for it
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)
        return True


async def _saves(notebook: Path) -> Any:
    """Yield once per change of ``notebook`` (also a save that replaces the file)."""
    import watchfiles

    async for _ in watchfiles.awatch(
        notebook.parent, watch_filter=lambda _, path: Path(path).name == notebook.name,
        debounce=200, step=50,
    ):
        yield
