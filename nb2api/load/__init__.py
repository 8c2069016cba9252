"""First stage: a notebook file in, the functions its marked cells define out.

``read`` parses the file into plain data (:class:`ParsedNotebook`), with ``directives`` reading
every ``#|`` line and ``clean`` turning IPython syntax into Python; ``run`` executes the setup and
api cells into a fresh module and collects the route functions (:class:`LoadedNotebook`).
"""

from __future__ import annotations

from .directives import CellKind, Directive, parse_job, parse_route
from .read import Cell, ParsedNotebook, parse_notebook, read_notebook, without_outputs
from .run import (
    LoadedNotebook,
    NotebookFunction,
    Progress,
    cell_filename,
    load_notebook,
    load_parsed,
    missing_name_hint,
)

__all__ = [
    "Cell",
    "CellKind",
    "Directive",
    "LoadedNotebook",
    "NotebookFunction",
    "ParsedNotebook",
    "Progress",
    "cell_filename",
    "load_notebook",
    "load_parsed",
    "missing_name_hint",
    "parse_job",
    "parse_notebook",
    "parse_route",
    "read_notebook",
    "without_outputs",
]
