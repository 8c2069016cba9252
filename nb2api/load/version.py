"""A notebook's version: a short hash of what its service runs.

The hash covers the marked cells' kinds and sources, in order, and nothing else: saving the
notebook with new outputs, or editing an exploration cell, keeps the version; editing a setup or
api cell changes it. Served as ``X-Notebook-Version`` on every response and shown in ``/docs``, so
a client can tell which version answered, across reloads.
"""

from __future__ import annotations

import hashlib

from .read import ParsedNotebook

VERSION_LENGTH = 12  # hex digits: 48 bits, unique enough to tell a notebook's saves apart


def notebook_version(notebook: ParsedNotebook) -> str:
    """``'3f2a9c01b7de'``: the first hex digits of a SHA-256 over the marked cells."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        digest.update(f"{cell.kind}\0{len(cell.source)}\0".encode())
        digest.update(cell.source.encode())
    return digest.hexdigest()[:VERSION_LENGTH]


def combined_version(versions: dict[str, str]) -> str:
    """One version for several notebooks, served under the names of ``versions``."""
    digest = hashlib.sha256()
    for name in sorted(versions):
        digest.update(f"{name}\0{versions[name]}\0".encode())
    return digest.hexdigest()[:VERSION_LENGTH]
