"""``nb2api serve`` of several notebooks: a notebook whose cell raises while it loads (skipped
with --skip-broken, or a reload that fails) leaves no "still running cell N" ticker behind."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from conftest import code, wait_until

from nb2api import cli
from nb2api.errors import NotebookError
from nb2api.serve import multi
from nb2api.settings import Settings


class _Built(Exception):
    """Stands for the server starting: the test ends there."""


def test_a_cell_that_raises_leaves_no_still_running_ticker(tmp_path, monkeypatch, make_notebook):
    folder = tmp_path / "team"
    folder.mkdir()
    make_notebook(code("#| setup\nraise RuntimeError('no data yet')"), name="team/broken.ipynb")
    failures = []

    def build(targets, settings, load, reload=False):
        for target in targets.notebooks:
            try:
                load(target.path, settings)
            except NotebookError as error:  # what --skip-broken does with it
                failures.append(str(error))
        raise _Built

    monkeypatch.setattr(multi.Notebooks, "build", staticmethod(build))
    before = set(threading.enumerate())
    with pytest.raises(_Built):
        cli._serve_several([folder], Settings(), SimpleNamespace(reload=False), "text")
    assert failures and "no data yet" in failures[0]

    def tickers():
        return [t for t in set(threading.enumerate()) - before
                if t.name == "nb2api-progress" and t.is_alive()]

    wait_until(lambda: not tickers(), timeout=10, message="the progress ticker to stop")
