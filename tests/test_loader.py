import tracemalloc

import nbformat
import pytest
from conftest import code

from nb2api.errors import CellExecutionError, CellSyntaxError, NoRoutesError, UndefinedNameError
from nb2api.load import load_notebook


def test_setup_and_api_cells_run_once_in_order_and_unmarked_never(notebook):
    loaded = load_notebook(notebook("core_tags"))
    assert loaded.module.CALLS == ["setup"]
    assert [f.name for f in loaded.functions] == ["area", "setup_calls"]


def test_only_public_functions_the_cell_defines_are_collected(notebook):
    loaded = load_notebook(notebook("core_directives"))
    names = [f.name for f in loaded.functions]
    assert names == ["hypot", "get_item", "put_item", "delete_item", "ping"]
    assert "join" not in names and "_private" not in names


def test_route_directive_applies_to_the_next_function(notebook):
    loaded = load_notebook(notebook("core_directives"))
    options = {f.name: f.options.get("route") for f in loaded.functions}
    assert options["get_item"] == "GET /items/{key}"
    assert options["ping"] is None


def test_progress_reports_each_cell(notebook):
    seen = []
    load_notebook(notebook("core_tags"), progress=lambda cell, s: seen.append((cell.index, s)))
    assert [i for i, s in seen if s is None] == [2, 4]
    assert all(s >= 0 for i, s in seen if s is not None)


def test_setup_cell_raising_names_cell_line_and_exception(notebook):
    with pytest.raises(CellExecutionError) as info:
        load_notebook(notebook("err_setup_raises"))
    error = info.value
    assert (error.cell.index, error.line, error.ename) == (2, 4, "KeyError")
    assert error.cell.first_line == 'model_path = "model.pkl"'
    assert "Traceback" in error.traceback and "Traceback" not in str(error)


def test_undefined_annotation_at_def_time(notebook):
    with pytest.raises(UndefinedNameError) as info:
        load_notebook(notebook("err_undefined_at_def"))
    assert (info.value.cell.index, info.value.line, info.value.function) == (2, 2, "predict")
    assert "Sample" in str(info.value)


def test_tracebacks_name_the_cell(notebook):
    loaded = load_notebook(notebook("core_failures"))
    divide = next(f.func for f in loaded.functions if f.name == "divide")
    with pytest.raises(ZeroDivisionError) as info:
        divide(1, 0)
    assert info.traceback[-1].frame.code.raw.co_filename == "<core_failures cell 1>"


def test_ipython_syntax_runs_or_is_left_out_with_the_right_line(make_notebook):
    path = make_notebook(
        "%%time\n#| setup\nimport os\nif os:\n    !pip install nothing\n%matplotlib inline\n"
        "%time TIMED = 1 + 1\nSHOWN = %time 2 + 2",
        "%%capture\n#| setup\nCAPTURED = True",
        "#| api\ndef f() -> int:\n    return TIMED",
    )
    seen = []
    loaded = load_notebook(path, warn=seen.append)
    assert (loaded.module.TIMED, loaded.module.SHOWN, loaded.module.CAPTURED) == (2, 4, True)
    assert [w.split(", line ")[1].split(":")[0] for w in seen] == ["1", "5", "6", "1"]
    assert "left out '%%time' (an IPython cell magic; the cell's code runs" in seen[0]
    assert "left out '!pip install nothing'" in seen[1]


def test_a_name_a_left_out_line_assigned_is_explained_and_warned_first(make_notebook):
    path = make_notebook("#| setup\nimport os\nfiles = !ls\nprint(files)",
                         "#| api\ndef f() -> int:\n    return 1")
    seen = []
    with pytest.raises(CellExecutionError) as info:
        load_notebook(path, warn=seen.append)
    assert (info.value.cell.index, info.value.line, info.value.ename) == (1, 4, "NameError")
    assert "cell 1, line 3 assigned it with an IPython shell escape" in str(info.value)
    assert len(seen) == 1 and "line 3: left out 'files = !ls'" in seen[0]


def test_a_top_level_return_is_a_syntax_error_naming_the_line(make_notebook):
    path = make_notebook("#| setup\nx = 1\nreturn x", "#| api\ndef f() -> int:\n    return 1")
    with pytest.raises(CellSyntaxError) as info:
        load_notebook(path)
    assert (info.value.cell.index, info.value.line) == (1, 3)
    assert "'return' outside function" in str(info.value)


def test_display_and_get_ipython_are_harmless(make_notebook):
    path = make_notebook(
        "#| setup\nimport pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})\n"
        "for column in ['b', 'c']:\n    display(frame)\n    frame[column] = frame['a'] * 2\n"
        "get_ipython().run_line_magic('matplotlib', 'inline')\n"
        "SAME = get_ipython().user_ns is globals()",
        "#| api\ndef columns() -> list[str]:\n    display(frame)\n    return list(frame.columns)",
    )
    loaded = load_notebook(path)
    assert loaded.module.SAME is True
    assert loaded.module.columns() == ["a", "b", "c"]


def test_a_missing_name_points_at_the_unmarked_cell_that_defines_it(make_notebook):
    path = make_notebook(
        "import json\nthreshold = json.loads('0.5')",
        "for limit in range(3):\n    pass",
        "#| setup\nLIMIT = limit + threshold",
        "#| api\ndef f() -> float:\n    return LIMIT",
    )
    with pytest.raises(CellExecutionError) as info:
        load_notebook(path)
    assert info.value.ename == "NameError"
    assert ("name 'limit' is not defined; cell 2 (\"for limit in range(3):\") defines it but is "
            "not marked setup") in str(info.value)


def test_no_route_functions_is_an_error_that_says_why(make_notebook):
    with pytest.raises(NoRoutesError) as info:
        load_notebook(make_notebook("#| setup\nx = 1", name="a.ipynb"))
    assert "no cell is marked api" in str(info.value)
    with pytest.raises(NoRoutesError) as info:
        load_notebook(make_notebook("#| setup\nx = 1", "#| api\ndef _hidden(): ...",
                                    name="b.ipynb"))
    assert info.value.cell.index == 2 and "defines no public function" in str(info.value)


def test_saved_outputs_are_not_kept(make_notebook):
    big = nbformat.v4.new_output("stream", name="stdout", text="x" * 30_000_000)
    path = make_notebook("#| api\ndef f() -> int:\n    return 1", code("print(1)", outputs=[big]))
    tracemalloc.start()
    try:
        loaded = load_notebook(path)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.functions and kept < 10_000_000
