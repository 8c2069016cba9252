import pytest

from nb2api.errors import AnnotationError, RouteConflictError, SignatureError, UndefinedNameError
from nb2api.load import load_notebook
from nb2api.routes import build_routes


def routes(notebook, name):
    return {r.name: r for r in build_routes(load_notebook(notebook(name)))}


def test_default_route_is_post_by_name_and_directive_overrides(notebook):
    specs = routes(notebook, "core_directives")
    assert [(s.method, s.path) for s in specs.values()] == [
        ("POST", "/hypot"), ("GET", "/items/{key}"), ("PUT", "/items/{key}"),
        ("DELETE", "/items/{key}"), ("POST", "/ping")]
    sources = {p.name: p.source for p in specs["get_item"].params}
    assert sources == {"key": "path", "default": "query"}
    assert {p.name: p.source for p in specs["put_item"].params} == {"key": "path", "value": "body"}


def test_models_have_stable_names_and_required_fields(notebook):
    specs = routes(notebook, "core_types")
    model = specs["constrained"].body_model
    assert model.__name__ == "ConstrainedRequest"
    assert specs["constrained"].response_model.__name__ == "ConstrainedResponse"
    schema = model.model_json_schema()
    assert schema["required"] == ["count"]
    assert schema["properties"]["count"]["maximum"] == 10
    assert schema["properties"]["count"]["description"] == "How many"
    assert schema["properties"]["ratio"]["default"] == 0.5
    # a pydantic model returned as is keeps its own name
    assert specs["summarize"].response_model.__name__ == "Summary"
    assert specs["nothing"].body_model is None


def test_unannotated_parameter_accepts_anything_with_a_warning(notebook):
    spec = routes(notebook, "core_types")["anything"]
    assert not spec.params[0].annotated
    assert any("anything()" in w and "'payload'" in w for w in spec.warnings)


def test_docstrings_give_summary_and_field_descriptions(notebook):
    specs = routes(notebook, "core_docs")
    mean = specs["mean"]
    assert mean.summary == "Arithmetic mean of the values."
    assert mean.description.startswith("Compute the **mean**")  # the markdown cell above
    assert "Sorted values lose" in mean.description  # the docstring's long description
    props = mean.body_model.model_json_schema()["properties"]
    assert props["values"]["description"] == "The numbers to average."  # numpy style
    median = specs["median"].body_model.model_json_schema()["properties"]
    assert median["values"]["description"] == "The numbers, in any order."  # Google style


@pytest.mark.parametrize(
    ("source", "error", "function", "parameter"),
    [
        ("def total(*numbers: float) -> float:\n    return sum(numbers)",
         SignatureError, "total", "numbers"),
        ("def configure(name: str, **options: str) -> dict:\n    return options",
         SignatureError, "configure", "options"),
        ("class Model:\n    def __init__(self, weights):\n        self.weights = weights\n\n\n"
         "def score(model: Model) -> float:\n    return 0.0", AnnotationError, "score", "model"),
        ("from __future__ import annotations\n\n\ndef predict(sample: Sample) -> float:\n"
         "    return 0.0", UndefinedNameError, "predict", "sample"),
        ("#| route: GET /users/{user_id}\ndef user(name: str) -> str:\n    return name",
         SignatureError, "user", "user_id"),
    ],
)
def test_signature_rules_are_checked_at_load(make_notebook, source, error, function, parameter):
    with pytest.raises(error) as info:
        build_routes(load_notebook(make_notebook("#| api\n" + source)))
    assert (info.value.function, info.value.parameter) == (function, parameter)
    assert info.value.cell is not None and info.value.line is not None


def test_two_functions_on_one_route(make_notebook):
    notebook = make_notebook(
        "#| api\n#| route: GET /items/{key}\ndef first(key: str) -> str:\n    return key",
        "#| api\n#| route: GET /items/{name}\ndef second(name: str) -> str:\n    return name",
    )
    with pytest.raises(RouteConflictError) as info:
        build_routes(load_notebook(notebook))
    assert info.value.cell.index == 2 and info.value.function == "second"
    assert "first()" in str(info.value)


def test_signature_text(notebook):
    spec = routes(notebook, "core_types")["constrained"]
    assert spec.signature() == "constrained(count: int, ratio: float = 0.5) -> float"


FLOATS = """#| api
from typing import Annotated

from pydantic import Field


def ratio(x: float) -> float:
    return x / 0 if x else float("nan")


def ratios() -> list[float]:
    return [1.0, float("inf")]


def by_name() -> dict[str, float] | None:
    return {"a": float("nan")}


def bounded() -> Annotated[float, Field(ge=0)]:
    return float("inf")


def count() -> int:
    return 1
"""

NUMBER_OR_NULL = [{"type": "number"}, {"type": "null"}]


def test_a_float_result_is_documented_as_number_or_null_as_nan_is_written(make_notebook):
    from fastapi.testclient import TestClient

    from nb2api import create_app

    with TestClient(create_app(make_notebook(FLOATS))) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        assert schemas["RatioResponse"]["anyOf"] == NUMBER_OR_NULL
        assert schemas["RatiosResponse"]["items"]["anyOf"] == NUMBER_OR_NULL
        assert schemas["ByNameResponse"]["anyOf"][0]["additionalProperties"]["anyOf"] == (
            NUMBER_OR_NULL)
        assert schemas["BoundedResponse"]["anyOf"] == [{"type": "number", "minimum": 0.0},
                                                       {"type": "null"}]
        assert schemas["CountResponse"] == {"type": "integer", "title": "CountResponse"}
        assert client.post("/ratio", json={"x": 0}).json() is None
        assert client.post("/ratios").json() == [1.0, None]
        assert client.post("/bounded").json() is None


def test_a_body_route_documents_the_400_of_a_body_json_cannot_read(make_notebook):
    from fastapi.testclient import TestClient

    from nb2api import create_app

    with TestClient(create_app(make_notebook(FLOATS))) as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert paths["/ratio"]["post"]["responses"]["400"]["content"]["application/json"][
            "schema"] == {"$ref": "#/components/schemas/DetailBody"}
        assert "400" not in paths["/count"]["post"]["responses"]  # no body
        refused = client.post("/ratio", content=b'{"x": "\xff"}',
                              headers={"Content-Type": "application/json"})
        assert refused.status_code == 400
        assert set(refused.json()) == {"detail"}


def test_float_fields_of_returned_models_are_documented_as_number_or_null(make_notebook):
    """NaN in a model's float field is answered as null; the answer's schema says so, and the
    same model taken in a request keeps its own schema."""
    from fastapi.testclient import TestClient

    from nb2api import create_app

    path = make_notebook(
        "#| setup\nfrom pydantic import BaseModel\n\n"
        "class Inner(BaseModel):\n    w: float\n\n"
        "class Point(BaseModel):\n    x: float\n    inner: Inner\n    n: int = 0\n\n"
        "class Out(BaseModel):\n    y: float | None = None\n    z: float",
        "#| api\ndef nan() -> Out:\n    return Out(z=float('nan'))\n\n"
        "def echo(p: Point) -> Point:\n    return Point(x=float('inf'), inner=Inner(w=p.x))",
    )
    with TestClient(create_app(path)) as client:
        document = client.get("/openapi.json").json()
        schemas = document["components"]["schemas"]
        assert schemas["Out"]["properties"]["z"]["type"] == ["number", "null"]
        assert schemas["Out"]["properties"]["y"]["anyOf"] == [{"type": "number"},
                                                              {"type": "null"}]
        # Taken in the request too: the request keeps Point, the answer gets Point-Output.
        assert schemas["Point"]["properties"]["x"]["type"] == "number"
        assert schemas["Point-Output"]["properties"]["x"]["type"] == ["number", "null"]
        assert schemas["Point-Output"]["properties"]["inner"]["$ref"].endswith("Inner-Output")
        assert schemas["Inner-Output"]["properties"]["w"]["type"] == ["number", "null"]
        assert schemas["Point-Output"]["properties"]["n"]["type"] == "integer"
        answer = document["paths"]["/echo"]["post"]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"]["$ref"].endswith("/Point-Output")
        assert client.post("/nan").json() == {"y": None, "z": None}
        assert client.post("/echo", json={"p": {"x": 1, "inner": {"w": 2}}}).json()["x"] is None
