import json

import pytest

from nb2api.errors import CellSyntaxError, DirectiveError, NoMarkedCellsError, NotebookReadError
from nb2api.load import parse_notebook, read_notebook
from nb2api.load.clean import to_python
from nb2api.load.directives import parse_directives


def _nb(*cells):
    """A notebook's JSON text from (cell_type, source, tags) triples."""
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [
            {"cell_type": kind, "id": f"c{i}", "source": source, "metadata": {"tags": tags},
             **({"outputs": [], "execution_count": None} if kind == "code" else {})}
            for i, (kind, source, tags) in enumerate(cells)
        ],
    })


def test_tags_mark_cells(notebook):
    parsed = read_notebook(notebook("core_tags"))
    assert [(c.index, c.kind) for c in parsed.cells] == [(2, "setup"), (4, "api")]


def test_directives_mark_cells_and_mix_with_tags(notebook):
    parsed = read_notebook(notebook("core_directives"))
    assert [(c.index, c.kind) for c in parsed.cells] == [(1, "setup"), (3, "api"), (4, "api")]


def test_unmarked_code_and_raw_cells_are_left_out():
    text = _nb(("code", "x = 1", []), ("raw", "#| api", []), ("code", "#| api\ndef f(): ...", []))
    assert [c.index for c in parse_notebook(text).cells] == [3]


def test_directive_must_be_in_the_header_to_mark():
    text = _nb(("code", "x = 1\n#| api\n", []), ("code", "# comment\n\n#| setup\nimport os", []))
    assert [(c.index, c.kind) for c in parse_notebook(text).cells] == [(2, "setup")]


def test_markdown_directly_above_an_api_cell_is_its_description():
    text = _nb(("markdown", "About f", []), ("code", "#| api\ndef f(): ...", []),
               ("markdown", "Not above an api cell", []), ("code", "x = 1", []),
               ("code", "#| api\ndef g(): ...", []))
    cells = parse_notebook(text).cells
    assert [c.description for c in cells] == ["About f", None]


def test_directives_are_parsed_with_line_and_header_position():
    directives = parse_directives("#| api\n#| timeout: 30\nx = 1\n#| route: GET /a/{b}\ndef f(b): ...")
    assert [(d.key, d.value, d.line, d.in_header) for d in directives] == [
        ("api", "", 1, True), ("timeout", "30", 2, True), ("route", "GET /a/{b}", 4, False)]


def test_bad_route_directive_names_cell_and_line():
    with pytest.raises(DirectiveError) as info:
        parse_notebook(_nb(("markdown", "x", []), ("code", "#| api\n#| route: FETCH a\ndef f(): ...", [])))
    assert (info.value.cell.index, info.value.line) == (2, 2)


def test_errors_for_unreadable_files(tmp_path, notebook):
    with pytest.raises(NotebookReadError):
        read_notebook(tmp_path / "missing.ipynb")
    with pytest.raises(NotebookReadError):
        read_notebook(notebook("err_invalid_json"))
    with pytest.raises(NotebookReadError):
        read_notebook(notebook("err_not_notebook"))
    with pytest.raises(NoMarkedCellsError):
        read_notebook(notebook("err_no_marked"))


def test_syntax_error_names_cell_first_line_and_line(notebook):
    with pytest.raises(CellSyntaxError) as info:
        read_notebook(notebook("err_syntax"))
    error = info.value
    assert (error.cell.index, error.cell.first_line, error.line) == (3, "def f(x: int) -> int:", 3)
    assert 'cell 3 ("def f(x: int) -> int:"), line 3' in str(error)


def test_ipython_only_lines_are_dropped_keeping_line_numbers():
    source = "%matplotlib inline\nimport os\n!pip install x\ndisplay(os)\nx = 1\n"
    python = to_python(source)
    assert python.code.splitlines() == ["", "import os", "", "", "x = 1"]
    assert [line for line, _ in python.dropped] == [1, 3, 4]


def test_display_inside_a_function_body_is_kept():
    assert "display(x)" in to_python("def f(x):\n    display(x)\n").code


def test_cell_magic_body_is_kept():
    python = to_python("%%time\ntotal = sum(range(10))\n")
    assert python.code.splitlines() == ["", "total = sum(range(10))"]


def test_older_notebook_formats_are_converted(notebook):
    parsed = read_notebook(notebook("core_v3"))
    assert [(c.index, c.kind) for c in parsed.cells] == [(1, "setup"), (2, "api")]
