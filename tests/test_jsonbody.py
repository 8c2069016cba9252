"""Large request bodies read by orjson: the same values as ``json.loads``, or its errors."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.serve import jsonbody

_leaves = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.integers(min_value=-(2**80), max_value=2**80))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20)


def same(a, b) -> bool:
    """Equal and of the same types throughout (1 is not 1.0 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_values, st.sampled_from(["", " ", "\n"]))
def test_every_body_reads_as_json_loads_reads_it(monkeypatch, value, space):
    monkeypatch.setattr(jsonbody, "LARGE", 0)  # every body takes the large-body path
    body = json.dumps(value, separators=("," + space, ":" + space)).encode()
    assert same(jsonbody.loads(body), json.loads(body))


@pytest.mark.parametrize("text", [
    b"[123456789012345678901234567890, 1]", b'{"n": -9223372036854775809}',
    b"[NaN, Infinity]", b"[1e400]", b'["\\ud800"]', "[1, 2]".encode("utf-16"),
    b"[12345678901234567890.5, 1.12345678901234567890123]", b'{"a": 1, "a": 2}',
])
def test_what_orjson_reads_otherwise_or_refuses_is_read_by_json(monkeypatch, text):
    monkeypatch.setattr(jsonbody, "LARGE", 0)
    assert same(jsonbody.loads(text), json.loads(text))


@pytest.mark.parametrize("text", [b"[1,", b"{'a': 1}", b"\xff"])
def test_a_body_json_cannot_read_raises_as_json_does(monkeypatch, text):
    monkeypatch.setattr(jsonbody, "LARGE", 0)
    with pytest.raises(ValueError):  # JSONDecodeError and UnicodeDecodeError both are
        jsonbody.loads(text)
