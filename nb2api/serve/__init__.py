"""Third stage: route specs -> a FastAPI app, and everything it runs with.

``app`` composes it; ``endpoint`` calls a notebook function for one request; ``runtime`` owns the
worker and process pools (``pools``, ``processes``), ``limits`` bounds each route, ``fastpath``
answers plain JSON requests without FastAPI's per-request handler; ``middleware``, ``metrics``,
``logs``, ``health``, ``auth`` and ``docs`` are the operations built into every app.
"""

from __future__ import annotations

from .app import build_app, create_app

__all__ = ["build_app", "create_app"]
