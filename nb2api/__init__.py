"""nb2api: serve the marked cells of a Jupyter notebook as a typed, async FastAPI app.

The public names are imported on first use, so that importing ``nb2api`` (as every Jupyter server
does, to find its extension) costs next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = [
    "LoadedNotebook",
    "NotebookError",
    "ParsedNotebook",
    "RouteSpec",
    "Settings",
    "__version__",
    "build_routes",
    "cancelled",
    "create_app",
    "load_notebook",
    "progress",
    "read_notebook",
]

_SOURCES = {
    "LoadedNotebook": ".load",
    "NotebookError": ".errors",
    "ParsedNotebook": ".load",
    "RouteSpec": ".routes",
    "Settings": ".settings",
    "build_routes": ".routes",
    "cancelled": ".serve.jobs",
    "create_app": ".mcp",  # the served app, with /mcp
    "load_notebook": ".load",
    "progress": ".serve.jobs",
    "read_notebook": ".load",
}

if TYPE_CHECKING:
    from .errors import NotebookError
    from .load import LoadedNotebook, ParsedNotebook, load_notebook, read_notebook
    from .mcp import create_app
    from .routes import RouteSpec, build_routes
    from .serve.jobs import cancelled, progress
    from .settings import Settings


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nb2api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension ("Serve as API" button) lives."""
    return [{"src": "labextension", "dest": "nb2api-labextension"}]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The Jupyter server extension behind the button (imported only when Jupyter asks)."""
    from .jupyter import _jupyter_server_extension_points

    return _jupyter_server_extension_points()
