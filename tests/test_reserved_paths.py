"""A notebook route may not take a path nb2api serves itself."""

import pytest

from nb2api.errors import ReservedPathError, RouteConflictError
from nb2api.load import load_notebook
from nb2api.routes import RESERVED_PATHS, build_routes


@pytest.mark.parametrize(("route", "path"), [
    ("#| route: GET /healthz", "/healthz"),
    ("#| route: GET /openapi.json", "/openapi.json"),
    ("#| route: GET /jobs/{job}", "/jobs/{job}"),
    ("#| route: POST /_nb2api/static/x", "/_nb2api/static/x"),
    ("", "/metrics"),  # the default route of a function named metrics
])
def test_a_route_on_a_reserved_path_is_a_load_error(make_notebook, route, path):
    path_arg = "job: str" if "{job}" in path else ""
    notebook = make_notebook(
        "#| setup\nimport math",
        f"#| api\n\n{route}\ndef metrics({path_arg}) -> int:\n    return 1",
    )
    with pytest.raises(ReservedPathError) as info:
        build_routes(load_notebook(notebook))
    error = info.value
    assert isinstance(error, RouteConflictError)
    assert (error.function, error.cell.index, error.line) == ("metrics", 2, 4)
    assert path in str(error)


def test_paths_beside_reserved_ones_are_free(make_notebook):
    notebook = make_notebook(
        "#| api\n#| route: GET /docs2\ndef docs2() -> int:\n    return 1\n\n"
        "#| route: GET /metrics-summary\ndef summary() -> int:\n    return 2",
    )
    assert [s.path for s in build_routes(load_notebook(notebook))] == ["/docs2", "/metrics-summary"]


def test_the_reserved_list_is_the_design_list():
    assert set(RESERVED_PATHS) == {"/healthz", "/readyz", "/metrics", "/docs", "/redoc",
                                   "/openapi.json", "/jobs", "/mcp", "/_nb2api"}
