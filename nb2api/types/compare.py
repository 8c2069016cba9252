"""Compare two JSON values, floats within a relative tolerance, and say where they differ.

Used by ``nb2api test`` and by the ``tests/test_examples.py`` of an exported project (which
vendors this package), so that both judge an answer alike.
"""

from __future__ import annotations

import math
from typing import Any


def differences(expected: Any, actual: Any, rtol: float = 1e-9, *, limit: int = 5,
                labels: tuple[str, str] = ("expected", "got")) -> list[str]:
    """Up to ``limit`` lines, one per place where ``actual`` differs from ``expected``
    (``$.price: expected 243.0, got 244.0``); empty when they agree. Numbers agree within
    ``rtol`` of the larger; NaN agrees with NaN."""
    found: list[str] = []
    _walk(expected, actual, "$", rtol, found, limit + 1, labels)
    if len(found) > limit:
        found[limit:] = ["..."]
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _walk(expected: Any, actual: Any, where: str, rtol: float, found: list[str], limit: int,
          labels: tuple[str, str]) -> None:
    if len(found) >= limit:
        return
    first, second = labels
    if _number(expected) and _number(actual):
        both_nan = isinstance(expected, float) and isinstance(actual, float) and math.isnan(
            expected) and math.isnan(actual)
        if not (both_nan or math.isclose(expected, actual, rel_tol=rtol, abs_tol=0.0)):
            found.append(f"{where}: {first} {expected!r}, {second} {actual!r}")
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                found.append(f"{where}.{key}: {first} {_short(expected[key])}, {second} nothing")
            else:
                _walk(expected[key], actual[key], f"{where}.{key}", rtol, found, limit, labels)
        for key in actual:
            if key not in expected:
                found.append(f"{where}.{key}: {first} nothing, {second} {_short(actual[key])}")
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            found.append(f"{where}: {first} {len(expected)} items, {second} {len(actual)}")
            return
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            _walk(left, right, f"{where}[{index}]", rtol, found, limit, labels)
        return
    if type(expected) is not type(actual) or expected != actual:
        found.append(f"{where}: {first} {_short(expected)}, {second} {_short(actual)}")
