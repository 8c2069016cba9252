"""pandas and numpy, imported only when a notebook uses them.

Importing pandas costs about 0.3 s of start-up and tens of MB; a notebook that never imports
numpy (pandas imports it too) can neither declare nor return an array or a DataFrame, so nb2api
asks :func:`in_use` before it looks for one, and reaches the libraries through :class:`LazyModule`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


class LazyModule:
    """Stands for a module; imports it on first attribute access.

    A relative ``name`` (``".frames"``) needs ``package`` (the caller's ``__package__``): it keeps
    these modules free of the name ``nb2api``, so ``nb2api export`` can copy them verbatim.
    """

    def __init__(self, name: str, package: str | None = None) -> None:
        self._name = name
        self._package = package

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name, self._package), attr)


def in_use() -> bool:
    """True when numpy, and so maybe pandas, has been imported by the notebook or its libraries."""
    return "numpy" in sys.modules


def loaded(module: str, name: str) -> Any:
    """``module.name`` when ``module`` is already imported, else None (without importing it).

    A notebook that never imported pandas cannot hold a DataFrame annotation: checking costs
    nothing then, where touching ``pd.DataFrame`` would import pandas.
    """
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


def data_types() -> tuple[type, ...]:
    """The array and table types whose library is loaded (empty when none is)."""
    found: list[type] = []
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        found.append(numpy.ndarray)
    pandas = sys.modules.get("pandas")
    if pandas is not None and hasattr(pandas, "DataFrame"):  # not while pandas is importing
        found += [pandas.DataFrame, pandas.Series]
    return tuple(found)
