"""The documentation site: built strictly, its examples run, its snippets linted.

- Every ``console`` block of a page runs (``tests/docs_examples.py`` says how): each documented
  ``nb2api serve`` starts a real server on 127.0.0.1, each ``curl`` goes to it, and each output
  must be the documented one. ``NB2API_DOCS_UPDATE=1`` writes the actual outputs that differ
  into the pages instead (then read the diff).
- Every python block titled with a notebook cell or a file is that cell or file.
- ``mkdocs build --strict`` passes: no broken link, reference or generated table.
- Every python block passes ruff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from docs_examples import (
    DOCS,
    ROOT,
    JobIds,
    Session,
    documented_cells,
    fences,
    matches,
    page_cwd,
    pages_with_commands,
    rewrite_outputs,
)
from hypothesis import given
from hypothesis import strategies as st

UPDATE = os.environ.get("NB2API_DOCS_UPDATE", "") not in ("", "0")
PAGES = sorted(DOCS.rglob("*.md"))


def _name(path: Path) -> str:
    return str(path.relative_to(DOCS))


def _can_build() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("page", pages_with_commands(), ids=_name)
def test_documented_commands_give_the_documented_output(page):
    session = Session(page_cwd(page))
    actual: dict[int, list[str]] = {}
    failures = []
    try:
        for fence in fences(page):
            for command in fence.commands:
                lines = session.run(command)
                if not matches(command.expected, lines):
                    actual[command.first] = lines  # the others keep their '...' lines
                    failures.append(
                        f"{_name(page)}:{command.first}: $ {command.text}\n"
                        "--- documented\n" + "\n".join(command.expected) +
                        "\n--- actual\n" + "\n".join(lines)
                    )
    finally:
        session.close()
    if UPDATE and failures:
        rewrite_outputs(page, actual)
    assert not failures, "\n\n".join(failures)


def test_the_tutorial_and_guides_run_commands():
    """The parser finds the examples: a page that loses its console blocks is noticed."""
    names = {_name(p) for p in pages_with_commands()}
    assert {"tutorial/first-route.md", "tutorial/types.md", "tutorial/dataframes.md",
            "tutorial/errors.md", "index.md"} <= names


CELLS = [(page, fence, file, cell) for page in PAGES
         for fence, file, cell in documented_cells(page)]


@pytest.mark.parametrize(("page", "fence", "file", "cell"), CELLS,
                         ids=[f"{_name(c[0])}:{c[1].title}" for c in CELLS])
def test_documented_cells_are_the_notebooks_cells(page, fence, file, cell):
    shown = "\n".join(fence.lines)
    assert file.is_file(), f"{_name(page)} shows {fence.title}, which does not exist"
    if cell is None:
        assert shown == file.read_text().rstrip("\n")
    else:
        notebook = nbformat.read(file, as_version=4)
        assert shown == notebook.cells[cell - 1].source, f"{_name(page)}: {fence.title}"


def test_every_notebook_in_the_docs_folder_is_shown_or_served():
    used = "\n".join(p.read_text() for p in PAGES)
    for notebook in (DOCS / "notebooks").rglob("*.ipynb"):
        assert notebook.name in used, f"{notebook} is used by no page"


def test_python_snippets_pass_ruff(tmp_path):
    """Each python block, as a file. Cells of a notebook use names other cells define or
    import, and import what later cells use: so F821, F401, F811 and E402 are not checked."""
    count = 0
    for page in PAGES:
        for number, fence in enumerate(fences(page)):
            if fence.language != "python":
                continue
            count += 1
            name = f"{_name(page).replace('/', '__').removesuffix('.md')}__{number}.py"
            (tmp_path / name).write_text("\n".join(fence.lines) + "\n")
    assert count >= 20
    config = tmp_path / "ruff.toml"
    config.write_text(
        'line-length = 100\ntarget-version = "py310"\n[lint]\n'
        'select = ["E", "F", "W", "I", "B", "UP"]\n'
        'ignore = ["B008", "F821", "F401", "F811", "E402"]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(config),
         "--output-format", "concise", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not _can_build() and not os.environ.get("CI"),
                    reason="pip install -e '.[docs]' to build the site")
def test_mkdocs_build_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1",
             "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                           if p)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "NB2API_MAX_WORKERS" in cli and "generated:" not in cli
    metrics = (site / "reference" / "metrics" / "index.html").read_text()
    assert "nb2api_requests_total" in metrics and "nb2api_pool_workers" in metrics
    api = (site / "reference" / "python-api" / "index.html").read_text()
    assert "create_app" in api and "NotebookError" in api
    # nothing the pages load comes from another host
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert 'src="http' not in text and "fonts.googleapis" not in text, html
    index = json.loads((site / "search" / "search_index.json").read_text())
    assert any("worker pool" in doc["text"].lower() for doc in index["docs"])


def _hooks():
    """scripts/docs_hooks.py, the MkDocs hooks that generate the reference tables."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_tables_are_the_declarations():
    from nb2api.settings import ServerOptions, Settings, markdown_table

    hooks = _hooks()
    page = "a\n<!-- generated: settings Settings -->\nb\n<!-- generated: settings ServerOptions -->"
    assert hooks.render(page) == (f"a\n{markdown_table(Settings)}\nb\n"
                                  f"{markdown_table(ServerOptions)}")
    with pytest.raises(ValueError, match="unknown generated table 'settngs'"):
        hooks.render("<!-- generated: settngs Settings -->")
    with pytest.raises(ValueError, match="Setings"):
        hooks.render("<!-- generated: settings Setings -->")


def test_the_cli_reference_has_every_command_and_option():
    import typer

    from nb2api.cli import app
    from nb2api.settings import ServerOptions, Settings

    table = _hooks().cli_reference()
    for name, command in typer.main.get_command(app).commands.items():
        assert f"### `nb2api {name}`" in table
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"nb2api {name} {param.opts[0]} has no help text"
                if param.name not in {*Settings.model_fields, *ServerOptions.model_fields}:
                    assert f"`{param.opts[0]}`" in table, (name, param.opts)
    assert "Every setting in the two tables above is an option" in table
    assert "| `--ray` |  |  | Serve on Ray Serve" in table


def test_the_metrics_reference_lists_what_an_app_reports(make_notebook):
    from conftest import code
    from fastapi.testclient import TestClient

    import nb2api

    path = make_notebook(code("#| api\ndef add(a: int) -> int:\n    return a + 1"))
    with TestClient(nb2api.create_app(path)) as client:
        client.post("/add", json={"a": 1})
        scraped = client.get("/metrics").text
    reported = {line.split()[2] for line in scraped.splitlines() if line.startswith("# HELP ")}
    table = _hooks().metrics_table()
    documented = {row.split("`")[1] for row in table.splitlines()[2:]}
    assert documented == reported
    assert "| `nb2api_requests_total` | counter | `route`, `method`, `status` |" in table


def test_the_contract_lists_every_mark_and_directive():
    from nb2api.load.directives import KNOWN_KEYS

    contract = (DOCS / "reference" / "notebook-contract.md").read_text()
    table = contract.split("## Marks and directives", 1)[1].split("\n## ", 1)[0]
    for key in KNOWN_KEYS:
        assert f"`#| {key}" in table, f"'#| {key}' is not in the contract's table"


_LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)


@given(st.lists(_LINE, max_size=8), st.data())
def test_an_elision_matches_any_lines_and_nothing_else_is_loose(lines, data):
    lines = [line for line in lines if line != "..."]
    assert matches(lines, lines)
    start = data.draw(st.integers(0, len(lines)))
    end = data.draw(st.integers(start, len(lines)))
    assert matches([*lines[:start], "...", *lines[end:]], lines)
    if lines:
        assert not matches(lines[:-1], lines)
        assert not matches([*lines, "extra"], lines)


def test_a_job_id_made_by_a_run_stands_for_the_one_the_page_shows():
    page, run = "sw-6EkXPEvH0lq6DElX2lGBe", "Cbmiy3fz7fT0QFAUxAZEd9x7"
    other_page, other_run = "gy_Gz0MpMKg0_KNXj5_qofd6", "nSeYulbeCuSMqdWXxEV29ETd"
    ids = JobIds()
    assert ids.output([f"location: /jobs/{page}", "", f'{{"id": "{page}"}}'],
                      f'location: /jobs/{run}\n\n{{"id": "{run}"}}') == (
        f'location: /jobs/{page}\n\n{{"id": "{page}"}}')
    assert ids.command(f"curl -s localhost:8000/jobs/{page}/result") == (
        f"curl -s localhost:8000/jobs/{run}/result")
    # a later output: the known id is shown as the page's, a new one is paired in order
    assert ids.output([f'{{"id": "{other_page}"}}', f"job {page} has already succeeded"],
                      f'{{"id": "{other_run}"}}\njob {run} has already succeeded') == (
        f'{{"id": "{other_page}"}}\njob {page} has already succeeded')
    assert ids.command(f"/jobs/{other_page} /jobs/{page}") == f"/jobs/{other_run} /jobs/{run}"
    # an id the page does not show (a page being written) stays the run's, to be written in
    fresh = "Qe3kXw8ZrT1vLb0hNd5yPa2c"
    assert ids.output([], f'{{"id": "{fresh}"}}') == f'{{"id": "{fresh}"}}'
    # other 24-character words are not ids
    assert ids.output(["abcdefghijklmnopqrstuvwx"], "ABCDEFGHIJKLMNOPQRSTUVWX") == (
        "ABCDEFGHIJKLMNOPQRSTUVWX")


def test_iso_times_are_normalized():
    assert matches(['{"created": "2026-11-30T22:13:12.036Z"}'],
                   ['{"created": "2026-12-01T01:33:47.016Z"}'])
    assert not matches(['{"created": "2026-11-30T22:13:12.036Z"}'], ['{"created": null}'])


@pytest.mark.parametrize("page", pages_with_commands(), ids=_name)
def test_rewriting_a_page_with_its_own_outputs_changes_nothing(page, tmp_path):
    copy = tmp_path / page.name
    copy.write_text(page.read_text())
    documented = {c.first: c.expected for f in fences(copy) for c in f.commands}
    rewrite_outputs(copy, documented)
    assert copy.read_text() == page.read_text()


def _nav_pages(items) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_page_is_in_the_nav():
    import yaml

    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert sorted(nav) == sorted(_name(page) for page in PAGES)


def test_the_readme_links_into_the_site():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"


def test_a_served_notebook_takes_the_variables_and_the_output_file_the_page_gives_it():
    import shlex

    from docs_examples import Serve, serve_command

    def served(text):
        return serve_command(shlex.split(text))

    assert served("nb2api serve a.ipynb --otel") == Serve(["a.ipynb", "--otel"], {})
    assert served("OTEL_TRACES_EXPORTER=console NAME='a b=c' nb2api serve a.ipynb > spans.json &") \
        == Serve(["a.ipynb"], {"OTEL_TRACES_EXPORTER": "console", "NAME": "a b=c"}, "spans.json")
    assert served("nb2api serve a.ipynb > spans.json") == Serve(["a.ipynb", ">", "spans.json"], {})
    assert served("nb2api serve a.ipynb > spans.json 2> server.log &") \
        == Serve(["a.ipynb"], {}, "spans.json", "server.log")
    assert served("nb2api serve a.ipynb 2> server.log &") == Serve(["a.ipynb"], {}, None, "server.log")
    assert served("curl -s localhost:8000/healthz") is None
    assert served("NAME=1 python agent.py") is None
    assert served("echo nb2api serve a.ipynb") is None


def test_the_normalizer_hides_span_ids_error_ids_and_measured_seconds_only():
    from docs_examples import normalize

    span = '{"name":"queue","span_id":"0x2b5af6d66516b223","nb2api.error_id":"4e93620aa5f8"}'
    other = '{"name":"queue","span_id":"0x32985fbff953c906","nb2api.error_id":"93e7184cfbd2"}'
    assert normalize(span) == normalize(other)
    assert normalize("raised OverflowError [error_id=db9319cf7fb1]") \
        == normalize("raised OverflowError [error_id=f7fd6f83397f]")
    trace = '"trace_id":"0x0af7651916cd43dd8448eb211c80319c"'
    assert normalize(trace) == trace  # a trace id the page chose stays as written
    assert normalize('nb2api.io/setup-seconds: "0.01"') == normalize('nb2api.io/setup-seconds: "2.50"')
    assert normalize('"churn":0.655') == '"churn":0.655'
    assert normalize('      memory: "256Mi"') == normalize('      memory: "711Mi"')
    assert normalize('memory: "256Mi" and more') == 'memory: "256Mi" and more'
