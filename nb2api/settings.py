"""Settings of a served notebook, shared by ``create_app``, the CLI and the Jupyter extension."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    """How a notebook is served. Every field has a CLI flag of the same name."""

    debug: bool = False  # tracebacks in 500 responses
    max_workers: int | None = None  # threads for plain ``def`` routes; default min(32, cpus + 4)
    root_path: str = ""  # the prefix a proxy serves the app under

    def updated(self, **changes: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)
