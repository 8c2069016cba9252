"""Run what ``nb2api export`` writes as a machine without nb2api would: every import of nb2api
refused, so that a test fails if the exported project still needs it."""

from __future__ import annotations

_REFUSE_NB2API = """\
import sys

class RefuseNb2api:
    def find_spec(self, name, path=None, target=None):
        if name == "nb2api" or name.startswith("nb2api."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, RefuseNb2api())
sys.modules.pop("nb2api", None)
"""

# python -c RUN_APP APP PORT: the exported app ("app:app") under uvicorn on 127.0.0.1:PORT.
RUN_APP = _REFUSE_NB2API + """\
import uvicorn

uvicorn.run(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

# python -c RUN_TESTS, in the exported project: its own pytest tests.
RUN_TESTS = _REFUSE_NB2API + """\
import pytest

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests"]))
"""
