"""A notebook that does not use numpy or pandas does not pay for importing them."""

import subprocess
import sys

from conftest import code

SCRIPT = """
import sys
from fastapi.testclient import TestClient
import nb2api
client = TestClient(nb2api.create_app(sys.argv[1]))
assert client.post("/area", json={"radius": 1}).status_code == 200
assert client.post("/setup_calls").json() == ["setup"]
print(sorted(m for m in ("numpy", "pandas", "pyarrow") if m in sys.modules))
"""


def test_no_pandas_or_numpy_import_for_a_notebook_without_them(make_notebook):
    notebook = make_notebook(
        code("import math\nCALLS = ['setup']", tags=["setup"]),
        code("def area(radius: float) -> float:\n    return math.pi * radius**2\n\n\n"
             "def setup_calls() -> list[str]:\n    return CALLS", tags=["api"]),
    )
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(notebook)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
