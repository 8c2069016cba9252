"""First stage: a notebook file in, the functions its marked cells define out.

``read`` parses the file into plain data (:class:`ParsedNotebook`), with ``directives`` reading
every ``#|`` line and ``clean`` turning IPython syntax into Python; ``run`` executes the setup and
api cells into a fresh module and collects the route functions (:class:`LoadedNotebook`).
"""

from __future__ import annotations

from .directives import CellKind, Directive, parse_batch, parse_job, parse_route
from .folder import NotebookTarget, Skipped, Targets, find_notebooks, parse_targets
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
from .version import combined_version, notebook_version

__all__ = [
    "Cell",
    "CellKind",
    "Directive",
    "LoadedNotebook",
    "NotebookFunction",
    "NotebookTarget",
    "ParsedNotebook",
    "Progress",
    "Skipped",
    "Targets",
    "cell_filename",
    "combined_version",
    "find_notebooks",
    "load_notebook",
    "load_parsed",
    "missing_name_hint",
    "notebook_version",
    "parse_batch",
    "parse_job",
    "parse_notebook",
    "parse_route",
    "parse_targets",
    "read_notebook",
    "without_outputs",
]
