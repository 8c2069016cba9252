"""nb2api: serve the marked cells of a Jupyter notebook as a typed, async FastAPI app."""

__version__ = "0.1.0"

from .app import create_app  # noqa: E402
from .errors import NotebookError  # noqa: E402
from .loader import LoadedNotebook, load_notebook  # noqa: E402
from .notebook import ParsedNotebook, read_notebook  # noqa: E402
from .schema import RouteSpec, build_routes  # noqa: E402
from .settings import Settings  # noqa: E402

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


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension ("Serve as API" button) lives."""
    return [{"src": "labextension", "dest": "nb2api-labextension"}]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The Jupyter server extension behind the button (imported only when Jupyter asks)."""
    from .jupyter import _jupyter_server_extension_points

    return _jupyter_server_extension_points()
