"""Settings of a served notebook, shared by ``create_app``, the CLI and the Jupyter extension."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """How a notebook is served. Every field has a CLI flag of the same name."""

    debug: bool = False  # tracebacks in 500 responses
    max_workers: int | None = None  # threads for plain ``def`` routes; default min(32, cpus + 4)
    root_path: str = ""  # the prefix a proxy serves the app under
    token: str | None = field(default=None, repr=False)  # bearer token for the notebook's routes
    cors_origins: tuple[str, ...] = ()  # origins allowed to call from a browser; "*" for any
    max_body_size: int = DEFAULT_MAX_BODY_SIZE  # bytes; larger request bodies get 413; 0: no limit
    timeout: float | None = None  # seconds per call, for routes without '#| timeout:' (504)
    max_concurrency: int | None = None  # calls at once per route without '#| max-concurrency:'
    max_queue: int = 100  # requests waiting per route beyond its concurrency; then 503
    processes: int | None = None  # workers for '#| executor: process' routes; default: CPUs
    metrics: bool = True  # Prometheus metrics at /metrics
    access_log: bool = True  # one log line per request

    def updated(self, **changes: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        if changes.get("cors_origins") is not None:
            changes["cors_origins"] = tuple(changes["cors_origins"])
        return replace(self, **changes)
