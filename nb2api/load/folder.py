"""Which notebooks one server serves, and the prefix each is served under.

``nb2api serve notebooks/`` serves every notebook of the folder that has marked cells (the
others are listed as skipped, with the reason); ``nb2api serve a.ipynb b.ipynb`` serves each
under its file name; ``nb2api serve pricing=models/v2.ipynb`` chooses the prefix. Nothing here
runs notebook code: a folder's notebooks are read to see whether they have marked cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NoMarkedCellsError, NotebookError
from .read import read_notebook

# A prefix is one URL path segment that needs no escaping.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Prefixes that would hide the root's own endpoints (the reserved paths of routes.py).
RESERVED_NAMES = frozenset({"healthz", "readyz", "metrics", "docs", "redoc", "openapi.json",
                            "jobs", "mcp", "_nb2api"})


@dataclass(frozen=True)
class NotebookTarget:
    """A notebook to serve under ``/<name>``."""

    name: str
    path: Path


@dataclass(frozen=True)
class Skipped:
    """A notebook of a folder that is not served, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Targets:
    """What the arguments of ``nb2api serve`` name: notebooks to serve, the folder notebooks
    skipped, and the folders given (watched for new notebooks under ``--reload``)."""

    notebooks: tuple[NotebookTarget, ...]
    skipped: tuple[Skipped, ...] = ()
    folders: tuple[Path, ...] = ()


def name_for(stem: str) -> str:
    """A prefix made of a file name: ``'Sales Report (v2)'`` -> ``'Sales-Report-v2'``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:64]
    return name or "notebook"


def check_name(name: str, given: str) -> str:
    if not _NAME.match(name):
        raise NotebookError(
            f"'{given}': '{name}' cannot be a URL prefix; use letters, digits and -_. "
            "(for example pricing=models/v2.ipynb)")
    if name.lower() in RESERVED_NAMES:
        raise NotebookError(
            f"'{given}': /{name} is a path nb2api serves itself; choose another prefix with "
            f"NAME=PATH (for example {name}-api={given.partition('=')[2] or given})")
    return name


def is_notebook_file(path: Path) -> bool:
    return path.suffix == ".ipynb" and not path.name.startswith(".") and path.is_file()


def find_notebooks(folder: Path) -> tuple[list[NotebookTarget], list[Skipped]]:
    """The notebooks directly in ``folder`` that have marked cells, by name, and the others.

    A notebook that has marked cells but cannot be read otherwise (invalid JSON) is a target:
    loading it gives its error. Hidden files and ``.ipynb_checkpoints`` are not looked at."""
    targets, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if is_notebook_file(p)):
        try:
            read_notebook(path)
        except NoMarkedCellsError:
            skipped.append(Skipped(path, "no cell is marked setup or api"))
            continue
        except NotebookError:
            pass  # its load gives the error
        targets.append(NotebookTarget(name_for(path.stem), path))
    return targets, skipped


def parse_targets(arguments: list[str]) -> Targets:
    """The notebooks that ``nb2api serve`` arguments name: files, ``NAME=PATH`` and folders.

    Raises :class:`NotebookError` for a missing path, a name that cannot be a prefix, or two
    notebooks that would share one."""
    notebooks: list[NotebookTarget] = []
    skipped: list[Skipped] = []
    folders: list[Path] = []
    for argument in arguments:
        given_name, equals, rest = argument.partition("=")
        path = Path(rest if equals and _NAME.match(given_name) else argument)
        if path.is_dir():
            if equals and _NAME.match(given_name):
                raise NotebookError(f"'{argument}': a folder's notebooks are named by their "
                                    "files; NAME=PATH names one notebook")
            found, left = find_notebooks(path)
            notebooks += found
            skipped += left
            folders.append(path)
            continue
        if not path.exists():
            raise NotebookError("no such notebook file or folder", path=str(path))
        name = given_name if equals and _NAME.match(given_name) else name_for(path.stem)
        notebooks.append(NotebookTarget(check_name(name, argument), path))
    seen: dict[str, Path] = {}
    for target in notebooks:
        check_name(target.name, str(target.path))
        other = seen.get(target.name)
        if other is not None:
            raise NotebookError(
                f"{other} and {target.path} would both be served under /{target.name}; "
                f"name one with NAME=PATH (for example {target.name}2={target.path})")
        seen[target.name] = target.path
    return Targets(tuple(notebooks), tuple(skipped), tuple(folders))
