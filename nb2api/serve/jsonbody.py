"""A request body read as JSON: what Python's ``json.loads`` reads, read faster when it is large.

Starlette's ``Request.json()`` is ``json.loads``; on a 10,000-row table (2 MB) that takes about
four times what orjson takes (``bench/bench_dataframe.py``). The two read every JSON text alike
except where orjson refuses (NaN, a lone surrogate, UTF-16, deep nesting, a number past the
float range) and one place where it does not: an integer past 64 bits, which orjson reads as a
float. So a large body that has no run of 19 or more digits outside a fraction or exponent is
read by orjson, and everything else, small bodies included, by ``json.loads`` as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

LARGE = 64 * 1024  # below this, json.loads is quick enough, and numpy need not be imported
_DIGITS = 19  # the shortest run of digits that may be an integer past 64 bits
_NOT_INTEGER_AFTER = frozenset(b".eE")


def loads(body: bytes) -> Any:
    """``json.loads(body)``, the same value and the same exceptions, but faster on large bodies."""
    if len(body) >= LARGE and not _may_hold_big_integers(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # json.loads may read it, or says why not, as Starlette would
    return json.loads(body)


def _may_hold_big_integers(body: bytes) -> bool:
    """Whether ``body`` has a run of 19+ digits that is not a fraction or an exponent's digits
    (an integer that may not fit 64 bits, or just digits in a string: both go to json.loads)."""
    import numpy as np  # a core dependency, imported only when a large body arrives

    data = np.frombuffer(body, np.uint8)
    not_digit = np.flatnonzero((data - np.uint8(48)) > 9)  # positions of non-digits
    bounds = np.concatenate(([-1], not_digit, [len(data)]))
    long_runs = np.flatnonzero(np.diff(bounds) > _DIGITS)  # runs of >= 19 digits
    for k in long_runs.tolist():  # rare: a fraction with many digits, an id, a big integer
        before, after = int(bounds[k]), int(bounds[k + 1])
        if before >= 0 and body[before] == ord("."):
            continue  # the digits of a fraction
        if after < len(body) and body[after] in _NOT_INTEGER_AFTER:
            continue  # the integer part of a float (123...45.6 or 123...45e6)
        return True
    return False
