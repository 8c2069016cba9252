"""schemathesis against every test notebook that nb2api can serve, with every check on.

Each notebook under ``tests/notebooks/`` but the load-error fixtures is served in this process
(``create_app``) and schemathesis generates requests from its OpenAPI document, valid and invalid
ones, a bounded number per operation, and runs all of its checks on each answer: no 5xx, the body
matches its documented schema, the status and content type and headers are documented, invalid
data is refused and valid data accepted, and the rest (``schemathesis.checks``).

What is left out is listed below, each with its reason: routes that fail by design (they raise,
sleep past their timeout, wait for another request), and the known problems that another change
fixes (recognised in _expected by what they look like, and named there).
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import NOTEBOOKS, openapi_operations
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import AcceptedNegativeData, Failure, FailureGroup, ServerError
from schemathesis.openapi.checks import (
    RejectedPositiveData,
    UndefinedContentType,
    UndefinedStatusCode,
)

import nb2api

EXAMPLES_PER_MODE = 8  # per operation, for valid and for invalid requests each
_CANNOT_SERVE = ("err_", "types_err_", "jupyter_broken")  # load-error fixtures, by design
SERVED = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if not p.stem.startswith(_CANNOT_SERVE))

# (notebook, operationId) -> why the route is not called at all.
NOT_CALLED = {
    ("ops_limits", "slow"): "sleeps as long as asked: 504 past its 0.3 s timeout",
    ("ops_limits", "slow_async"): "sleeps as long as asked: 504 past its 0.3 s timeout",
    ("ops_limits", "hold"): "waits for another request to release it: 503 past its limit",
    ("core_pool", "heavy"): "sleeps as long as asked (a worker kept busy)",
    ("ops_process", "spin"): "runs for as long as n says",
    ("ops_process", "spin_thread"): "runs for as long as n says",
    ("export_iris", "matrix"): "allocates an n x n array: a large n would take the machine's memory",
}

# (notebook, operationId) -> why its notebook code raises for some valid input: there, and only
# there, a 500 whose detail says that the function raised (or returned a wrong value) is expected.
RAISES = {
    ("ops_basic", "boom"): "raises ValueError on purpose",
    ("ops_process", "fail"): "raises ValueError in the worker process on purpose",
    ("core_failures", "divide"): "b=0 raises ZeroDivisionError",
    ("core_docs", "mean"): "statistics.fmean([]) raises StatisticsError",
    ("core_docs", "median"): "statistics.median([]) raises StatisticsError",
    ("core_tags", "area"): "radius**2 raises OverflowError past 1e154",
    ("core_types", "summarize"): "divides by the number of values: ZeroDivisionError for none",
    ("core_types", "lying"): "returns a str for an int on purpose",
    ("export_iris", "fail"): "raises ValueError on purpose",
    ("export_iris", "wrong"): "returns a str for an int on purpose",
    ("export_frames", "bad_result"): "returns a table without Sale's columns on purpose",
    ("types_frames", "bad_result"): "returns a table without Sale's columns on purpose",
    ("export_frames", "cumulative"): "Series.cumsum() raises TypeError on values it cannot add",
    ("types_series_arrays", "cumulative"): "Series.cumsum() raises TypeError on values it "
                                           "cannot add",
    ("export_frames", "raw"): "decodes the file's first bytes as UTF-8",
    ("types_uploads", "raw"): "decodes the file's first bytes as UTF-8",
    ("types_images", "not_an_image"): "returns a str for a Figure on purpose",
    ("core_v3", "root"): "math.sqrt of a negative number raises ValueError",
}

# (notebook, operationId) -> statuses the notebook raises as HTTPException, passed through as is
# (the contract), so they cannot be in the document.
PASSED_THROUGH = {
    ("core_failures", "teapot"): {418},
    ("core_directives", "delete_item"): {404},
}

# Where JSON Schema cannot say what the server checks, a request that matches the document may
# still be a 422 (schemathesis' positive_data_acceptance): an array's nested lists must be
# rectangular and numeric, a split-form row as wide as its columns and typed by them, a table's
# rows valid for its Row. Recognised by the 422's errors (_beyond_the_schema), and for these
# routes, whose uploaded file must be a readable CSV or Parquet table:
FILE_TABLES = {("export_frames", "upload"), ("types_uploads", "upload"),
               ("types_uploads", "sales")}

# (notebook, operationId) -> why a request that breaks the document is still accepted
# (schemathesis' negative_data_rejection). Also everywhere: pydantic's lax mode reads true and
# false as the numbers 1 and 0 where the document says number or integer (_lax_boolean).
LENIENT = dict.fromkeys(
    [("export_frames", "upload"), ("export_frames", "raw"), ("export_frames", "stream"),
     ("types_uploads", "upload"), ("types_uploads", "raw"), ("types_uploads", "stream"),
     ("types_uploads", "sales")],
    "multipart form fields are text: a null or a boolean arrives as a string",
)

# Found here and reported, not fixed in this change: (notebook, operationId) -> the failure.
FOUND: dict[tuple[str, str], str] = {}  # route -> a problem found and reported, not yet fixed



def _expected(name: str, route: str, response, failure) -> str | None:
    """Why ``failure`` on this answer is expected (by design, known or reported), or None."""
    key = (name, route)
    status = response.status_code
    body = _json(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(failure, ServerError) or status >= 500:
        if key in RAISES and status == 500 and isinstance(detail, str) and detail.startswith(
                (f"{route}() raised ", f"{route}() returned ")):
            return "raises by design"
        return None
    if isinstance(failure, (UndefinedStatusCode, RejectedPositiveData)):
        if status in PASSED_THROUGH.get(key, ()):
            return "HTTPException passed through"
        if isinstance(failure, RejectedPositiveData) and status == 422:
            errors = detail if isinstance(detail, list) else []
            if key in FILE_TABLES:
                return "JSON Schema cannot say it"
            if errors and all(_beyond_the_schema(e) for e in errors):
                return "JSON Schema cannot say it"
        return None
    if isinstance(failure, AcceptedNegativeData):
        if key in LENIENT:
            return "multipart fields are text"
        if _lax_boolean(str(failure.message)):
            return "pydantic reads booleans as numbers"
        return None
    if isinstance(failure, UndefinedContentType) and key in FOUND:
        return "found and reported"
    return None


def _beyond_the_schema(error: dict) -> bool:
    """A 422 error from a check the document cannot express (see FILE_TABLES)."""
    loc = error.get("loc", [])
    in_a_row = len(loc) >= 4 and isinstance(loc[2], int)  # body, table, row, column
    return error.get("type") in ("dataframe", "ndarray", "series") or in_a_row


def _lax_boolean(message: str) -> bool:
    """Each violation is a boolean sent where the document says number or integer."""
    violations = [line for line in message.splitlines() if "violates `type`" in line]
    return bool(violations) and all(
        line.rstrip().endswith(("(was number, became boolean)", "(was integer, became boolean)"))
        for line in violations)


def _json(response):
    try:
        return response.json()
    except ValueError:
        return None


def _run(name, route, operation, mode, seen: Counter, expected: Counter) -> None:
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case):
        response = case.call()
        seen[response.status_code] += 1
        try:
            case.validate_response(response)  # every check schemathesis has
        except (FailureGroup, Failure) as error:
            failures = list(getattr(error, "exceptions", [error]))
            reasons = [_expected(name, route, response, failure) for failure in failures]
            if None in reasons:
                raise
            expected.update(reasons)

    try:
        answers_as_documented()
    except Unsatisfiable:
        # No invalid request exists for a route without parameters, or with only `Any` ones.
        if mode is not GenerationMode.NEGATIVE:
            raise


@pytest.mark.parametrize("name", SERVED)
def test_every_served_notebook_answers_as_its_document_says(name, capsys):
    app = nb2api.create_app(NOTEBOOKS / f"{name}.ipynb")
    seen: Counter[int] = Counter()
    expected: Counter[str] = Counter()
    with TestClient(app):  # runs the lifespan: the pools start, and stop at the end
        for route, operation in openapi_operations(app, name):
            if (name, route) in NOT_CALLED:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run(name, route, operation, mode, seen, expected)
    with capsys.disabled():
        print(f"\n{name}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}"
              f"; expected failures: {dict(expected) or 'none'}")
    assert seen


def test_the_lists_name_real_routes():
    """Every route named in the lists above exists, so a typo cannot hide a failure."""
    listed = {*NOT_CALLED, *RAISES, *PASSED_THROUGH, *FILE_TABLES, *LENIENT, *FOUND}
    for name in sorted({name for name, _ in listed}):
        app = nb2api.create_app(NOTEBOOKS / f"{name}.ipynb")
        ids = {op.get("operationId") for ops in app.openapi()["paths"].values()
               for op in ops.values()}
        app.state.runtime.stop()
        missing = {route for notebook, route in listed if notebook == name} - ids
        assert not missing, (name, missing)
