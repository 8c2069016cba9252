"""Property-based tests of request bodies against every type of the notebook contract.

Whatever JSON a client sends to a route, the answer is a 4xx (the input is refused, before
notebook code runs) or a 2xx (it was accepted and the result encoded), never a 5xx. Bodies are
arbitrary JSON and mutations of valid ones (a value replaced, a key dropped or added, the body
wrapped), sent through the fast path and through FastAPI alone (``fast_path=False``).

Non-finite numbers (``NaN``, ``-Infinity``, ``1e400``), a split form with ``"index": null`` and
integers beyond 64 bits are sent like any other value.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from conftest import write_notebook
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api import create_app

SETUP = """#| setup
import datetime as dt
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal, Optional, Union

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, Field


class Color(str, Enum):
    red = "red"
    green = "green"


class Level(int, Enum):
    low = 1
    high = 2


@dataclass
class Point:
    x: float
    y: float


class Sample(BaseModel):
    values: list[float]
    label: Optional[str] = None


class Sale(BaseModel):
    item: str
    price: float
    qty: int
    sold: Optional[dt.datetime] = None
"""

API = """#| api
async def integer(x: int) -> int:
    return x


def integer_sync(x: int) -> int:
    return x


async def real(x: float) -> float:
    return x


async def text(x: str) -> str:
    return x


async def flag(x: bool) -> bool:
    return x


async def containers(xs: list[int], d: dict[str, float], t: tuple[int, str],
                     nested: list[dict[str, list[int]]] = []) -> dict:
    return {"xs": xs, "d": d, "t": t, "nested": nested}


async def literal(x: Literal["a", "b", 1]) -> str:
    return str(x)


async def enums(c: Color, level: Level = Level.low) -> Color:
    return c


async def optional(x: Optional[int] = None, u: Union[int, str, None] = None) -> Optional[str]:
    return None if x is None else f"{x}{u}"


async def when(t: dt.datetime, d: dt.date, delta: Optional[dt.timedelta] = None) -> dt.datetime:
    return t


async def uid(u: uuid.UUID) -> uuid.UUID:
    return u


async def model(sample: Sample) -> Sample:
    return sample


async def point(p: Point) -> Point:
    return p


async def constrained(count: Annotated[int, Field(ge=0, le=10)],
                      name: Annotated[str, Field(min_length=1, max_length=5)] = "a",
                      ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5) -> float:
    return count * ratio


async def frame(table: pd.DataFrame) -> pd.DataFrame:
    return table


def frame_sync(table: pd.DataFrame) -> dict:
    return {"rows": len(table), "columns": [str(c) for c in table.columns]}


async def rows(sales: Annotated[pd.DataFrame, Sale]) -> Annotated[pd.DataFrame, Sale]:
    return sales


def count_rows(sales: Annotated[pd.DataFrame, Sale]) -> int:
    return len(sales)


async def series(values: pd.Series) -> pd.Series:
    return values


async def array(a: np.ndarray) -> np.ndarray:
    return a


async def floats(a: NDArray[np.float64]) -> NDArray[np.float64]:
    return a * 2


async def int_vector(a: np.ndarray[tuple[int], np.dtype[np.int64]]) -> int:
    return int(a.sum())


async def scalars(i: np.int64, f: np.float64, b: np.bool_ = np.bool_(False)) -> dict:
    return {"i": i, "f": f, "b": b}


async def timestamp(t: pd.Timestamp) -> pd.Timestamp:
    return t


async def anything(x, y: Optional[list] = None):
    return {"x": x, "y": y}


async def nothing() -> str:
    return "ok"
"""

# A valid body per route: what mutations start from.
VALID: dict[str, list[Any]] = {
    "integer": [{"x": 3}],
    "integer_sync": [{"x": -3}],
    "real": [{"x": 1.5}, {"x": 2}],
    "text": [{"x": "héllo"}],
    "flag": [{"x": True}],
    "containers": [{"xs": [1, 2], "d": {"a": 1.0}, "t": [1, "x"], "nested": [{"k": [1]}]}],
    "literal": [{"x": "a"}, {"x": 1}],
    "enums": [{"c": "red", "level": 2}],
    "optional": [{}, {"x": 1, "u": "s"}],
    "when": [{"t": "2024-05-01T10:00:00", "d": "2024-05-01", "delta": 3.5}],
    "uid": [{"u": "12345678-1234-5678-1234-567812345678"}],
    "model": [{"sample": {"values": [1, 2.5], "label": "x"}}],
    "point": [{"p": {"x": 1, "y": 2}}],
    "constrained": [{"count": 3, "name": "abc", "ratio": 0.25}],
    "frame": [{"table": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]},
              {"table": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]], "index": [5, 6]}}],
    "frame_sync": [{"table": [{"a": 1}]}, {"table": {"columns": ["a"], "data": [[1]]}}],
    "rows": [{"sales": [{"item": "a", "price": 1.5, "qty": 2},
                        {"item": "b", "price": 2, "qty": 1, "sold": "2024-05-01T10:00:00"}]},
             {"sales": {"columns": ["item", "price", "qty"], "data": [["a", 1.0, 1]]}}],
    "count_rows": [{"sales": [{"item": "a", "price": 1.5, "qty": 2}]},
                   # an int past 64 bits in an int column (was an OverflowError, a 500)
                   {"sales": [{"item": "a", "price": 1.5, "qty": 2**70}]},
                   {"sales": {"columns": ["item", "price", "qty"], "data": [["a", 1, -(2**64)]]}}],
    "series": [{"values": [1, 2, 3]}, {"values": {"a": 1.5, "b": 2}}],
    "array": [{"a": [[1, 2], [3, 4]]}, {"a": [1.5]}],
    "floats": [{"a": [[1, None], [2, 3]]}],
    "int_vector": [{"a": [1, 2]}, {"a": []}],
    "scalars": [{"i": 3, "f": 1.5, "b": True}, {"i": 3, "f": "1.5"}],
    "timestamp": [{"t": "2024-05-01T10:00:00Z"}, {"t": 1714557600}],
    "anything": [{"x": {"any": [1, "json"]}}],
    "nothing": [{}, None],
}
ROUTES = sorted(VALID)

# JSON values; see the module docstring for what is kept out and why.
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
           | st.sampled_from(["", "2024-05-01", "2024-05-01T10:00:00", "red", "a", "1.5", "1e3",
                              "12345678-1234-5678-1234-567812345678", "P1D", "NaN", "nan",
                              "inf", "-Infinity", "true", "0x10", "9" * 30]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["x", "a", "columns", "data"]),
                      inner, max_size=4),
    max_leaves=10,
)
keys = st.sampled_from(["x", "y", "u", "t", "d", "c", "p", "a", "i", "f", "b", "xs", "table",
                        "sales", "values", "sample", "count", "name", "ratio", "level", "delta",
                        "nested", "columns", "data", "index"]) | st.text(max_size=5)


@st.composite
def mutated(draw, value: Any, depth: int = 0) -> Any:
    """``value`` with one change somewhere inside it."""
    if isinstance(value, dict) and value and depth < 4:
        key = draw(st.sampled_from(sorted(value, key=str)))
        action = draw(st.sampled_from(["descend", "descend", "replace", "drop", "add"]))
        out = dict(value)
        if action == "descend":
            out[key] = draw(mutated(value[key], depth + 1))
        elif action == "replace":
            out[key] = draw(json_values)
        elif action == "drop":
            del out[key]
        else:
            out[draw(keys)] = draw(json_values)
        return out
    if isinstance(value, list) and value and depth < 4:
        index = draw(st.integers(0, len(value) - 1))
        action = draw(st.sampled_from(["descend", "descend", "replace", "drop", "append"]))
        out = list(value)
        if action == "descend":
            out[index] = draw(mutated(value[index], depth + 1))
        elif action == "replace":
            out[index] = draw(json_values)
        elif action == "drop":
            del out[index]
        else:
            out.append(draw(json_values | st.sampled_from(out)))
        return out
    return draw(json_values | st.sampled_from([[value], {"x": value}, str(value), -1, 0, 10**6]))


@st.composite
def requests(draw) -> tuple[str, bytes]:
    """A route and the bytes of a body for it."""
    route = draw(st.sampled_from(ROUTES))
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "object", "bytes"]))
    if kind == "bytes":
        return route, draw(st.binary(max_size=40) | st.sampled_from(
            [b"", b"{", b"[1,", b'{"x": 1}garbage', b"\xff\xfe", b"null"]))
    if kind == "random":
        body = draw(json_values)
    elif kind == "object":
        body = draw(st.dictionaries(keys, json_values, max_size=4))
    else:
        body = draw(mutated(draw(st.sampled_from(VALID[route]))))
    return route, json.dumps(body).encode()


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "fastapi"])
def client(request, tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("bodies"), SETUP, API)
    with TestClient(create_app(path, fast_path=request.param),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def test_every_valid_body_is_accepted(client):
    for route, bodies in VALID.items():
        for body in bodies:
            response = client.post(f"/{route}", json=body)
            assert response.status_code == 200, (route, body, response.text)


def test_any_body_is_a_4xx_or_a_2xx(client):
    seen: Counter[tuple[str, int]] = Counter()  # (route, status class) of the requests sent

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(request=requests())
    def answers_4xx_or_2xx(request):
        route, content = request
        response = client.post(f"/{route}", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code < 500, (route, content, response.text)
        seen[route, response.status_code // 100] += 1
        answer = response.json()  # every answer, accepted or refused, is JSON
        if response.status_code == 422:
            assert isinstance(answer["detail"], list) and answer["detail"], answer
        elif response.status_code >= 400:
            assert "detail" in answer, answer

    answers_4xx_or_2xx()
    # the bodies were not all refused: the accepted side (results encoded) was exercised too
    accepted = {route for route, kind in seen if kind == 2}
    refused = {route for route, kind in seen if kind == 4}
    assert len(refused) >= len(ROUTES) - 2, sorted(set(ROUTES) - refused)
    assert len(accepted) >= len(ROUTES) // 2, sorted(set(ROUTES) - accepted)
