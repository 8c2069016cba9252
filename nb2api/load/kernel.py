"""What a Jupyter kernel gives the cells it runs, given the same way here.

- ``__name__ == "__main__"``: a kernel runs cells in ``__main__``, so functions and classes
  defined there have ``__module__ == "__main__"`` and objects pickled in Jupyter refer to
  ``__main__.column_ratio``. The process's real ``__main__`` module stays in ``sys.modules``
  (uvicorn's and multiprocessing's spawn read it) and also answers with the notebooks' names
  (:class:`_MainModule`), so pickle finds notebook names in both directions.
- ``display`` (a no-op, also where a cell imports IPython's) and ``get_ipython()`` (a stand-in
  whose magics do nothing).
- top-level ``await``: a cell compiled as a coroutine runs to completion on an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import types
import weakref
from typing import Any

logger = logging.getLogger("nb2api")

# The notebooks loaded in this process, newest first; weak, so this list never keeps one alive.
_NOTEBOOKS: list[weakref.ReferenceType[types.ModuleType]] = []


def kernel_namespace(module: types.ModuleType) -> None:
    """Give ``module`` the names a kernel defines before the first cell runs."""
    module.__dict__.update(
        __name__="__main__",
        display=display,
        get_ipython=IPythonStandIn(module.__dict__).get_ipython,
    )
    _serve_from_main(module)


def display(*objs: Any, **kwargs: Any) -> None:
    """Jupyter's ``display``: shows output in a notebook; a service has nowhere to show it."""
    return None


def quiet_display(namespace: dict[str, Any]) -> None:
    """Put the kernel-less ``display`` back where a cell bound IPython's own (``from
    IPython.display import display``), which prints its arguments when no kernel runs."""
    module = sys.modules.get("IPython.core.display_functions")
    ipython_display = getattr(module, "display", None)
    if ipython_display is None:
        return
    for name, value in list(namespace.items()):
        if value is ipython_display:
            namespace[name] = display


class IPythonStandIn:
    """What ``get_ipython()`` returns in a service: ``user_ns`` is the notebook's namespace, and
    magics and shell commands do nothing (one warning, the first time)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.user_ns = namespace
        self._warned = False

    def get_ipython(self) -> IPythonStandIn:
        return self

    def _nothing(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("get_ipython().%s(...) does nothing in nb2api: a service has no "
                           "IPython shell", what)
        return None

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return self._nothing("run_line_magic")

    def run_cell_magic(self, *args: Any, **kwargs: Any) -> None:
        return self._nothing("run_cell_magic")

    def magic(self, *args: Any, **kwargs: Any) -> None:
        return self._nothing("magic")

    def system(self, *args: Any, **kwargs: Any) -> None:
        return self._nothing("system")

    def getoutput(self, *args: Any, **kwargs: Any) -> None:
        return self._nothing("getoutput")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._nothing(name)


def _serve_from_main(module: types.ModuleType) -> None:
    """Show ``module``'s names through the process's ``__main__``, as a kernel's ``__main__`` is
    the notebook's namespace.

    ``__main__`` keeps its own module and names (spawn reads its ``__file__`` and ``__spec__`` to
    start children), and its class becomes :class:`_MainModule`, which adds the notebooks' names:
    ``getattr`` (pickle) finds a name ``__main__`` lacks in the notebooks, and ``__dict__`` (what
    ``typing.get_type_hints``, pydantic and dataclasses read to resolve a class's string
    annotations) is ``__main__``'s names with the notebooks' over them. Several notebooks in one
    process (tests, the Jupyter button) chain: the newest load wins a name two of them define.
    """
    _NOTEBOOKS[:] = [ref for ref in _NOTEBOOKS if ref() is not None]
    _NOTEBOOKS.insert(0, weakref.ref(module))
    main = sys.modules.get("__main__")
    if isinstance(main, types.ModuleType) and not isinstance(main, _MainModule):
        main.__class__ = _MainModule  # a module in a kernel (IPython's DummyMod) stays as is


_MODULE_DICT = types.ModuleType.__dict__["__dict__"]  # the module's own dict


def _notebooks() -> list[types.ModuleType]:
    """The loaded notebooks' modules, newest first."""
    return [m for m in (ref() for ref in _NOTEBOOKS) if m is not None]


class _MainModule(types.ModuleType):
    """The process's ``__main__`` module, which also answers with the loaded notebooks' names."""

    @property  # type: ignore[override]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        merged = dict(_MODULE_DICT.__get__(self))
        for module in reversed(_notebooks()):
            merged.update((k, v) for k, v in module.__dict__.items() if not _dunder(k))
        return merged

    def __getattr__(self, name: str) -> Any:
        if not _dunder(name):
            for module in _notebooks():
                if name in module.__dict__:
                    return module.__dict__[name]
        raise AttributeError(f"module '__main__' has no attribute '{name}'")


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def run_code(code: types.CodeType, namespace: dict[str, Any]) -> None:
    """``exec`` a cell's code; one compiled with top-level ``await`` is run on an event loop.

    When this thread already runs a loop (``create_app`` called from async code, or from a
    notebook), the coroutine runs on a fresh loop in a thread of its own.
    """
    result = eval(code, namespace)  # exec, but it returns the coroutine of an awaiting cell
    if not asyncio.iscoroutine(result):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(result)
        return
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(result)
        except BaseException as exc:  # raised again in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="nb2api-await-cell")
    thread.start()
    thread.join()
    if outcome:
        raise outcome[0]
