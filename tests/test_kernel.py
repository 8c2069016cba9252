"""Cells run as in a Jupyter kernel: objects pickled in a real kernel (which refer to
``__main__.column_ratio``) load when served, in every way of serving, and the reverse."""

from __future__ import annotations

import asyncio
import sys

import nbclient
import pytest
from conftest import notebook_node, serve
from fastapi.testclient import TestClient

from nb2api import create_app
from nb2api.load import load_notebook

DEFINITIONS = '''#| setup
import pickle

def column_ratio(X):
    return X["a"] / X["b"]

class Scaler:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k
'''
TRAINING = '''import functools
model = {"ratio": functools.partial(column_ratio), "scale": Scaler(3)}
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
'''
LOADING = '''#| setup
import os
MODEL_PATH = os.path.abspath("model.pkl")  # requests may run elsewhere
with open(MODEL_PATH, "rb") as f:
    model = pickle.load(f)
'''
ROUTES = '''#| api
def ratio(a: float, b: float) -> float:
    return model["ratio"]({"a": a, "b": b})

def scaled(x: float) -> float:
    return model["scale"](x)

#| executor: process
def scaled_in_worker(x: float) -> float:
    with open(MODEL_PATH, "rb") as f:
        return pickle.load(f)["scale"](x)
'''


def run_in_kernel(folder, *cells: str) -> None:
    """Run ``cells`` in a real IPython kernel, in ``folder``; a failing cell fails the test."""
    nb = notebook_node(*cells)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(folder)}}).execute()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A notebook whose unmarked cell pickled a model in a real kernel, next to model.pkl."""
    folder = tmp_path_factory.mktemp("trained")
    nb = notebook_node(DEFINITIONS, TRAINING, LOADING, ROUTES)
    run_in_kernel(folder, DEFINITIONS, TRAINING)
    path = folder / "notebook.ipynb"
    import nbformat

    nbformat.write(nb, path)
    return path


def test_a_model_pickled_in_jupyter_loads_in_create_app_and_process_routes(trained):
    with TestClient(create_app(trained)) as client:
        assert client.post("/ratio", json={"a": 6, "b": 3}).json() == 2.0
        assert client.post("/scaled", json={"x": 2}).json() == 6.0
        assert client.post("/scaled_in_worker", json={"x": 5}).json() == 15.0


def test_a_model_pickled_in_jupyter_loads_under_several_workers(trained):
    with serve(trained, "--workers", "2") as server, server.client() as client:
        for _ in range(4):
            assert client.post("/ratio", json={"a": 1, "b": 4}).json() == 0.25


def test_an_object_pickled_by_the_served_app_loads_in_jupyter(trained):
    loaded = load_notebook(trained)
    assert loaded.module.Scaler.__module__ == "__main__"
    blob = pickle_dumps(loaded.module.model["scale"], loaded.module.column_ratio)
    (trained.parent / "served.pkl").write_bytes(blob)
    run_in_kernel(trained.parent, DEFINITIONS, '''
with open("served.pkl", "rb") as f:
    scale, ratio = pickle.load(f)
assert scale(2) == 6 and ratio({"a": 1, "b": 2}) == 0.5
''')


def pickle_dumps(*objects) -> bytes:
    import pickle

    return pickle.dumps(objects)


def test_cells_run_as_main(make_notebook):
    loaded = load_notebook(make_notebook(
        '#| setup\nRAN = False\nif __name__ == "__main__":\n    RAN = True',
        "#| api\ndef ran() -> bool:\n    return RAN",
    ))
    assert loaded.module.RAN is True
    assert loaded.module.ran.__module__ == "__main__"
    # The process's own __main__ is left in place (spawn reads it); it also finds the names.
    assert sys.modules["__main__"].ran is loaded.module.ran
    assert not hasattr(sys.modules["__main__"], "__nb2api_missing__")


def test_the_newest_notebook_wins_a_name_two_define(make_notebook):
    first = load_notebook(make_notebook("#| api\ndef shared() -> int:\n    return 1", name="a.ipynb"))
    second = load_notebook(make_notebook("#| api\ndef shared() -> int:\n    return 2", name="b.ipynb"))
    assert sys.modules["__main__"].shared is second.module.shared
    assert first.module.shared() == 1


def test_pydantic_models_with_string_annotations_resolve_in_main(make_notebook):
    path = make_notebook(
        "#| setup\nfrom __future__ import annotations\nfrom dataclasses import dataclass\n"
        "from pydantic import BaseModel\nclass Inner(BaseModel):\n    v: int\n"
        "class Outer(BaseModel):\n    inner: Inner\n@dataclass\nclass Point:\n    inner: Inner",
        "#| api\nfrom __future__ import annotations\ndef f(o: Outer, p: Point) -> int:\n"
        "    return o.inner.v + p.inner.v",
    )
    client = TestClient(create_app(path))
    assert client.post("/f", json={"o": {"inner": {"v": 1}}, "p": {"inner": {"v": 2}}}).json() == 3


def test_top_level_await_runs_also_inside_a_running_loop(make_notebook):
    path = make_notebook(
        "#| setup\nimport asyncio\nawait asyncio.sleep(0)\nVALUE = await asyncio.sleep(0, 42)",
        "#| api\ndef value() -> int:\n    return VALUE",
    )
    assert load_notebook(path).module.VALUE == 42

    async def from_async_code():
        return create_app(path)

    app = asyncio.run(from_async_code())
    assert TestClient(app).post("/value").json() == 42


def test_ipythons_own_display_imported_by_a_cell_is_quiet_too(make_notebook, tmp_path, capfd):
    """``from IPython.display import display`` binds IPython's, which prints its arguments
    outside a kernel: route functions (served or exported) and later cells get the no-op."""
    from test_export import import_exported

    from nb2api.export import export_notebook

    path = make_notebook(
        "#| setup\nfrom IPython.display import Markdown, display\nimport pandas as pd",
        "#| setup\nframe = pd.DataFrame({'a': [1, 2]})\nfor column in ['b', 'c']:\n"
        "    frame[column] = frame['a'] * 2\n    display(Markdown(f'**{column}**'), frame)",
        "#| api\ndef columns() -> list[str]:\n    display(frame)\n    return list(frame.columns)",
    )
    loaded = load_notebook(path)
    project = export_notebook(loaded, tmp_path / "export")
    exported = getattr(import_exported(project, "quiet_display"), project.app_name)
    capfd.readouterr()
    for app in (create_app(loaded), exported):
        with TestClient(app) as client:
            assert client.post("/columns").json() == ["a", "b", "c"]
    assert capfd.readouterr().out == ""
