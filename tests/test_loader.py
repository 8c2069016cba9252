import pytest

from nb2api.errors import CellExecutionError, UndefinedNameError
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
