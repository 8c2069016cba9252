import json

import pytest

from nb2api.errors import CellSyntaxError, DirectiveError, NoMarkedCellsError, NotebookReadError
from nb2api.load import parse_notebook, read_notebook, without_outputs
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


def test_ipython_only_lines_are_left_out_keeping_line_numbers():
    source = "%matplotlib inline\nimport os\n!pip install x\ndisplay(os)\nx = 1\n"
    python = to_python(source)
    assert python.code.splitlines() == ["pass", "import os", "pass", "display(os)", "x = 1"]
    assert [item.line for item in python.left_out] == [1, 3]


def test_display_is_kept_everywhere():
    assert "display(x)" in to_python("def f(x):\n    display(x)\n").code
    assert "display(x)" in to_python("for x in y:\n    display(x)\n    z = x\n").code


def test_cell_magic_body_is_kept():
    python = to_python("%%time\ntotal = sum(range(10))\n")
    assert python.code.splitlines() == ["", "total = sum(range(10))"]


def test_older_notebook_formats_are_converted(notebook):
    parsed = read_notebook(notebook("core_v3"))
    assert [(c.index, c.kind) for c in parsed.cells] == [(1, "setup"), (2, "api")]


def test_marks_survive_formatters_case_and_a_leading_cell_magic():
    text = _nb(("code", "# | api\ndef a(): ...", []), ("code", "#|api\ndef b(): ...", []),
               ("code", "x = 1", ["Setup"]), ("code", "def c(): ...", ["API"]),
               ("code", "%%time\n#| setup\ny = 2", []))
    parsed = parse_notebook(text)
    assert [(c.index, c.kind) for c in parsed.cells] == [
        (1, "api"), (2, "api"), (3, "setup"), (4, "api"), (5, "setup")]


def test_misspelt_and_misplaced_marks_warn_naming_cell_and_line():
    text = _nb(("code", "#| apii\ndef f(): ...", []), ("code", "x = 1\n#| setup", []),
               ("code", "#| api\n#| echo: false\ndef g(): ...", []))
    warnings = parse_notebook(text).warnings
    assert len(warnings) == 2
    assert 'cell 1 ("def f(): ..."), line 1: unknown directive \'#| apii\'; did you mean \'#| api\'?' in warnings[0]
    assert 'cell 2 ("x = 1"), line 2: \'#| setup\' comes after code' in warnings[1]


def test_ipython_syntax_is_translated_line_by_line():
    python = to_python("if True:\n    !pip install x\nfiles = !ls\n%timeit -n 3 y = 1\nz = %time 2")
    assert python.code.splitlines() == ["if True:", "    pass", "pass", "y = 1", "z = 2"]
    assert [(i.line, i.text, i.names) for i in python.left_out] == [
        (2, "!pip install x", ()), (3, "files = !ls", ("files",))]
    whole = to_python("%%bash\necho hi")
    assert whole.code.strip() == "" and whole.left_out[0].kind == "an IPython cell magic"


def test_saved_outputs_are_dropped_before_shipping():
    text = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "#| api\ndef f(): ...", "metadata": {},
         "execution_count": 1, "outputs": [{"output_type": "stream", "name": "stdout",
                                            "text": "BIG"}]}]})
    assert "BIG" not in without_outputs(text)
    assert parse_notebook(without_outputs(text)).cells[0].kind == "api"
