import logging

import pytest
from fastapi.testclient import TestClient

import nb2api


@pytest.fixture
def client(notebook):
    def make(name, **settings):
        return TestClient(nb2api.create_app(notebook(name), **settings))
    return make


def test_body_is_keyed_by_parameter_name(client):
    c = client("core_types")
    assert c.post("/summarize", json={"sample": {"values": [1, 2, 3]}}).json() == {"n": 3, "mean": 2.0}
    assert c.post("/midpoint", json={"a": {"x": 0, "y": 0}, "b": {"x": 2, "y": 4}}).json() == {
        "x": 1.0, "y": 2.0}


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/constrained", {"count": 3}, 1.5),
    ("/choices", {"mode": "fast", "color": "red", "either": "x"},
     {"mode": "fast", "color": "red", "maybe": None, "either": "x"}),
    ("/containers", {"items": [1, 2], "mapping": {"b": 1, "a": 2}, "pair": [1, "x"]},
     {"sum": 3, "keys": ["a", "b"], "pair": [1, "x"]}),
    ("/times", {"when": "2024-05-01T10:00:00Z", "ident": "12345678-1234-4234-8234-123456789012"},
     {"year": 2024, "version": 4}),
    ("/anything", {"payload": [1, {"a": None}]}, {"got": [1, {"a": None}]}),
])
def test_types_round_trip(client, path, body, expected):
    response = client("core_types").post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_function_without_parameters_takes_empty_body_or_object(client):
    c = client("core_types")
    assert c.post("/nothing").json() == "nothing needed"
    assert c.post("/nothing", json={}).json() == "nothing needed"


def test_body_is_optional_when_every_parameter_has_a_default(client):
    c = client("core_types")
    assert c.post("/greet").json() == "hello world"
    assert c.post("/greet", json={}).json() == "hello world"
    assert c.post("/greet", json={"name": "you"}).json() == "hello you"


@pytest.mark.parametrize(("body", "loc"), [
    ({"count": 11}, ["body", "count"]),
    ({"count": "many"}, ["body", "count"]),
    ({}, ["body", "count"]),
    ({"count": 1, "ratio": "x"}, ["body", "ratio"]),
])
def test_invalid_input_gets_422_with_field_detail(client, body, loc):
    response = client("core_types").post("/constrained", json=body)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


def test_invalid_enum_and_literal(client):
    response = client("core_types").post("/choices", json={"mode": "medium", "color": "blue"})
    assert response.status_code == 422
    assert sorted(e["loc"][-1] for e in response.json()["detail"]) == ["color", "mode"]


def test_get_path_and_query_delete_and_put(client):
    c = client("core_directives")
    assert c.get("/items/a").json() == 1
    assert c.get("/items/zz", params={"default": 5}).json() == 5
    assert c.get("/items/zz", params={"default": "x"}).status_code == 422
    assert c.put("/items/b", json={"value": 2}).json() == {"a": 1, "b": 2}
    assert c.delete("/items/q", params={"missing_ok": "true"}).json() == {"a": 1, "b": 2}


def test_http_exception_passes_through(client):
    c = client("core_directives")
    response = c.delete("/items/q")
    assert (response.status_code, response.json()) == (404, {"detail": "no item 'q'"})
    assert client("core_failures").post("/teapot").status_code == 418


def test_other_exceptions_give_500_with_error_id_logged_and_serving_goes_on(client, caplog):
    c = client("core_failures")
    with caplog.at_level(logging.ERROR, logger="nb2api"):
        response = c.post("/divide", json={"a": 1, "b": 0})
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"detail", "error_id"}
    assert "ZeroDivisionError" in body["detail"]
    record = next(r for r in caplog.records if getattr(r, "error_id", None) == body["error_id"])
    assert record.exc_info[0] is ZeroDivisionError
    assert c.post("/ok").json() == "still serving"


def test_debug_adds_the_traceback(client):
    body = client("core_failures", debug=True).post("/divide", json={"a": 1, "b": 0}).json()
    assert any("<core_failures cell 1>" in line for line in body["traceback"])


def test_result_not_matching_annotation_is_a_500(client):
    response = client("core_types").post("/lying")
    assert response.status_code == 500
    assert "lying()" in response.json()["detail"]


def test_openapi_docs_and_redoc(client):
    c = client("core_docs")
    spec = c.get("/openapi.json").json()
    operation = spec["paths"]["/mean"]["post"]
    assert operation["operationId"] == "mean"
    assert operation["summary"] == "Arithmetic mean of the values."
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MeanRequest")
    assert "/healthz" not in spec["paths"]
    assert c.get("/docs").status_code == 200
    assert "openapi.json" in c.get("/docs").text
    assert c.get("/redoc").status_code == 200


def test_async_functions_run_on_the_loop_and_plain_ones_on_the_pool(make_notebook):
    notebook = make_notebook(
        "#| setup\nimport threading",
        "#| api\ndef plain() -> str:\n    return threading.current_thread().name\n\n\n"
        "async def awaited() -> str:\n    return threading.current_thread().name",
    )
    c = TestClient(nb2api.create_app(notebook, max_workers=3))
    assert c.post("/plain").json().startswith("nb2api-worker")
    assert not c.post("/awaited").json().startswith("nb2api-worker")
    assert c.app.state.runtime.pool.max_workers == 3


def test_unknown_setting_is_refused(notebook):
    with pytest.raises(TypeError):
        nb2api.create_app(notebook("core_tags"), no_such_setting=1)


def test_root_path_setting_prefixes_docs_and_servers(client):
    c = client("core_tags", root_path="/nb")
    assert "/nb/openapi.json" in c.get("/docs").text
    assert c.get("/openapi.json").json()["servers"] == [{"url": "/nb"}]
    assert c.post("/area", json={"radius": 1}).status_code == 200


def test_a_name_only_an_unmarked_cell_defines_is_named_in_the_500(make_notebook, caplog):
    """At request time too, the NameError says which unmarked cell defines the name, in the
    detail and in the log, from a thread, the event loop or a worker process."""
    path = make_notebook(
        "threshold = 0.5",
        "#| api\ndef scaled(x: float) -> float:\n    return x * threshold\n\n"
        "async def scaled_async(x: float) -> float:\n    return x * threshold\n\n"
        "#| executor: process\ndef scaled_apart(x: float) -> float:\n    return x * threshold\n\n"
        "def other(x: float) -> float:\n    return x * undefined_anywhere",
    )
    hint = "name 'threshold' is not defined; cell 1 (\"threshold = 0.5\") defines it but is " \
           "not marked setup"
    with TestClient(nb2api.create_app(path, processes=1)) as c, caplog.at_level(logging.ERROR):
        for route in ("scaled", "scaled_async", "scaled_apart"):
            response = c.post(f"/{route}", json={"x": 2})
            assert response.status_code == 500
            assert response.json()["detail"] == f"{route}() raised NameError: {hint}"
            assert c.post(f"/{route}", json={"x": 2}).json()["detail"].count("defines it") == 1
        other = c.post("/other", json={"x": 2}).json()["detail"]
        assert other == "other() raised NameError: name 'undefined_anywhere' is not defined"
    assert any(hint in record.getMessage() for record in caplog.records)
