"""The Jupyter server extension behind JupyterLab's "Serve as API" button.

Importing this package starts nothing; the extension's work begins when a Jupyter server
loads it (see ``extension.Nb2ApiExtension``).
"""

from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from .extension import Nb2ApiExtension

    return [{"module": "nb2api.jupyter", "app": Nb2ApiExtension}]
