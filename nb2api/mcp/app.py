"""The app that ``nb2api.create_app`` and ``nb2api serve`` give: the served notebook, plus
``/mcp`` unless the ``mcp`` setting is off."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from typing_extensions import Unpack

from ..load import LoadedNotebook, Progress
from ..serve import create_app as create_served_app
from ..settings import Settings, SettingsKeywords
from .http import mount_mcp


def create_app(
    notebook: str | Path | LoadedNotebook,
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    **changes: Unpack[SettingsKeywords],
) -> FastAPI:
    """Load ``notebook`` (running its setup and api cells) and return its FastAPI app, with its
    functions as MCP tools at ``/mcp`` unless ``mcp=False``.

    ``settings`` defaults to :class:`nb2api.Settings` read from the ``NB2API_*`` environment
    variables; keywords (``debug=True``, ``max_workers=4``, ...) change single fields of it.
    Raises :class:`nb2api.NotebookError` when the notebook cannot be served.
    """
    app = create_served_app(notebook, settings, progress=progress, **changes)
    if app.state.settings.mcp:
        mount_mcp(app)
    return app
