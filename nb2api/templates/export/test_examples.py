"""The notebook's example calls, replayed against this app (written by nb2api export).

Each case in examples.json is a call from a cell marked `example`: its request, and the answer
the direct call gave when the project was exported. Run with: python -m pytest tests
"""

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from nbtypes.compare import differences  # noqa: E402

SPEC = json.loads((Path(__file__).parent / "examples.json").read_text(encoding="utf-8"))
RTOL = 1e-9  # relative tolerance for floats


@pytest.fixture(scope="module")
def client():
    import app as exported

    with TestClient(getattr(exported, SPEC["app"])) as client:
        yield client


@pytest.mark.parametrize("case", SPEC["examples"], ids=[c["name"] for c in SPEC["examples"]])
def test_example(client, case):
    answer = client.request(case["method"], case["path"], params=case["query"] or None,
                            json=case["json"], headers=case["headers"])
    assert answer.status_code == 200, answer.text
    if case["answered"] and case["media_type"] == "application/json":
        diff = differences(case["expected"], answer.json(), RTOL)
        assert not diff, f"{case['call']}:\n" + "\n".join(diff)
