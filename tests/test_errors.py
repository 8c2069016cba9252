"""``nb2api.types.errors``: a route's answer, and the 500 that serve and an export both give."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fastapi import HTTPException

from nb2api.types.encoding import make_encoder
from nb2api.types.errors import error_response, respond

logger = logging.getLogger("test-errors")


async def _value(value):
    return value


async def _raise(exc):
    raise exc


def _answer(outcome, encode=None, **options):
    response = asyncio.run(respond("predict", outcome, encode, logger=logger, **options))
    return response.status_code, json.loads(response.body)


def test_the_result_is_encoded_with_the_routes_encoder():
    assert _answer(_value({"n": 3}), make_encoder(dict)) == (200, {"n": 3})
    assert _answer(_value(b'"ready"')) == (200, "ready")  # bytes from encode_after


def test_an_exception_is_a_500_naming_the_function_and_its_first_line(caplog):
    failed = []
    with caplog.at_level(logging.ERROR, logger="test-errors"):
        status, body = _answer(_raise(KeyError("petal")), failed=failed.append)
    assert status == 500 and set(body) == {"detail", "error_id"}
    assert body["detail"] == "predict() raised KeyError: 'petal'"
    [record] = caplog.records
    assert (record.error_id, record.route) == (body["error_id"], "predict")
    assert record.exc_info[0] is KeyError and body["error_id"] in record.getMessage()
    assert [type(exc) for exc in failed] == [KeyError]


def test_a_result_that_does_not_fit_its_annotation():
    status, body = _answer(_value("many"), make_encoder(int))
    assert status == 500
    assert body["detail"].startswith(
        "predict() returned a value that does not match its return annotation: ")


def test_http_exceptions_pass_through():
    with pytest.raises(HTTPException):
        _answer(_raise(HTTPException(404, "no such flower")))


def test_long_messages_are_cut_and_the_traceback_is_only_for_debug():
    exc = ValueError("x" * 1000 + "\nsecond line")
    body = json.loads(error_response("predict", exc, logger=logger).body)
    assert len(body["detail"]) == 300 and body["detail"].endswith("...")
    assert "traceback" not in body
    debug = json.loads(error_response("predict", exc, logger=logger, debug=True).body)
    assert debug["traceback"][-1].startswith("ValueError: xxx")
    bare = json.loads(error_response("predict", ValueError(), logger=logger).body)
    assert bare["detail"] == "predict() raised ValueError"


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("body", "quoted"), [
    ('{"a": -Infinity}', "-Infinity"),
    ('{"a": Infinity}', "Infinity"),
    ('{"a": NaN}', "NaN"),
    ('{"a": "\\ud800"}', "\ud800"),
    ('{"a": %s}' % ("[" * 800 + "]" * 800), json.loads("[" * 800 + "]" * 800)),
])
def test_a_422_quoting_what_json_cannot_write_is_still_written(make_notebook, fast_path, body,
                                                                quoted):
    from fastapi.testclient import TestClient

    from nb2api import create_app

    notebook = make_notebook("#| api\ndef inc(a: int) -> int:\n    return a + 1")
    with TestClient(create_app(notebook, fast_path=fast_path)) as client:
        response = client.post("/inc", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = json.loads(response.content)["detail"]
    assert error["loc"] == ["body", "a"]
    assert error["input"] == quoted
