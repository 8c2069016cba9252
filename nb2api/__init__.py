"""nb2api: serve the marked cells of a Jupyter notebook as a typed, async FastAPI app.

The public names are imported on first use, so that importing ``nb2api`` (as every Jupyter server
does, to find its extension) costs next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "LoadedNotebook",
    "NotebookError",
    "ParsedNotebook",
    "RouteSpec",
    "Settings",
    "__version__",
    "build_routes",
    "create_app",
    "load_notebook",
    "read_notebook",
]

_SOURCES = {
    "LoadedNotebook": ".loader",
    "NotebookError": ".errors",
    "ParsedNotebook": ".notebook",
    "RouteSpec": ".schema",
    "Settings": ".settings",
    "build_routes": ".schema",
    "create_app": ".app",
    "load_notebook": ".loader",
    "read_notebook": ".notebook",
}

if TYPE_CHECKING:
    from .app import create_app
    from .errors import NotebookError
    from .loader import LoadedNotebook, load_notebook
    from .notebook import ParsedNotebook, read_notebook
    from .schema import RouteSpec, build_routes
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
