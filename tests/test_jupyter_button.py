"""End to end: JupyterLab in headless Chromium, the "Serve as API" button, the served /docs.

Needs Debian's chromium at /usr/bin/chromium (no browser download). Under CI (``CI`` set)
a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import wait_until
from jobs_helpers import JOB_PATHS
from jupyter_helpers import BROKEN, GREETER, TOKEN, put_notebook, start_lab

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 60_000


def _require_browser():
    in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        if in_ci:
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    return sync_playwright


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # no file watching: a reload on save must come from the button
    server = start_lab(tmp_path_factory.mktemp("lab"), poll_interval=0)
    put_notebook(server.root / "greeter.ipynb", *GREETER)
    put_notebook(server.root / "broken.ipynb", *BROKEN)
    put_notebook(server.root / "edited.ipynb", *GREETER)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser_context(lab):
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        offsite: list[str] = []

        def local_only(route):
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                offsite.append(route.request.url)
                route.abort()

        # Every server here is on 127.0.0.1. (With the sync API, route handlers run only
        # while the test is inside a playwright call: wait with page.wait_for_timeout.)
        context.route("**/*", local_only)
        yield context, offsite
        context.close()
        browser.close()


SCREENSHOT_SIZE = {"width": 1100, "height": 560}


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    """The documentation's screenshot, taken where the test sees the state it shows: into
    docs/images when NB2API_SCREENSHOTS=1 (then commit it), else into the test's folder."""
    folder = Path(__file__).parent.parent / "docs" / "images"
    if os.environ.get("NB2API_SCREENSHOTS", "") in ("", "0"):
        folder = tmp_path
    path = folder / name
    page.screenshot(path=str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


def browser_pause(page):
    """A pause for :func:`wait_until` during which the browser (and its routes) keep working."""
    return lambda seconds: page.wait_for_timeout(seconds * 1000)


def open_notebook(context, lab, name: str):
    """Open a notebook in a fresh workspace; return the page and the notebook's panel."""
    page = context.new_page()
    page.goto(f"{lab.url}lab/tree/{name}?reset&token={TOKEN}")
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-Cell").first.wait_for()
    assert panel.count() == 1
    return page, panel.locator(".jp-NotebookPanel-toolbar")


def test_serve_as_api_opens_the_docs(lab, browser_context, tmp_path):
    context, offsite = browser_context
    page, toolbar = open_notebook(context, lab, "greeter.ipynb")
    page.set_viewport_size(SCREENSHOT_SIZE)
    serve = toolbar.get_by_text("Serve as API")
    serve.wait_for()

    with context.expect_page() as new_tab:
        serve.click()
    docs = new_tab.value
    docs.wait_for_url("**/nb2api/apps/*/docs")
    docs.locator(".opblock-summary-path").first.wait_for()
    paths = docs.locator(".opblock-summary-path").evaluate_all(
        "els => els.map(e => e.getAttribute('data-path'))"
    )
    assert sorted(set(paths) - JOB_PATHS) == ["/add", "/hello/{name}"]
    docs.set_viewport_size(SCREENSHOT_SIZE)
    _screenshot(docs, "served-docs.png", tmp_path)

    # the toolbar now shows the served state and offers to stop
    toolbar.get_by_text("Stop API").wait_for()
    assert not serve.is_visible()
    _screenshot(page, "serve-as-api.png", tmp_path)
    with lab.client() as api:
        served = api.get("nb2api/api/apps").json()
        assert [app["path"] for app in served] == ["greeter.ipynb"]
    # and the URL of its MCP tools, ready to copy for an agent's configuration
    mcp_url = f"{lab.url.rstrip('/')}{served[0]['mcp_url']}"
    toolbar.get_by_text("MCP URL").click()
    shown = page.locator(".jp-Dialog input.nb2api-mcp-url")
    shown.wait_for()
    assert shown.input_value() == mcp_url
    page.locator(".jp-Dialog").get_by_text("Copy", exact=True).click()
    page.get_by_text(f"Copied the MCP URL: {mcp_url}").wait_for()
    toolbar.get_by_text("Stop API").click()
    serve.wait_for()
    with lab.client() as api:
        assert api.get("nb2api/api/apps").json() == []
    docs.close()
    page.close()
    assert offsite == []


def test_a_broken_notebook_shows_the_error_in_a_dialog(lab, browser_context):
    context, offsite = browser_context
    page, toolbar = open_notebook(context, lab, "broken.ipynb")
    toolbar.get_by_text("Serve as API").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "Cannot serve this notebook as an API" in text
    assert 'cell 2 ("def f(x: Foo) -> int:")' in text and "'Foo' is not defined" in text
    page.close()
    assert offsite == []


def test_saving_a_served_notebook_reloads_it(lab, browser_context):
    context, offsite = browser_context
    page, toolbar = open_notebook(context, lab, "edited.ipynb")
    with context.expect_page() as new_tab:
        toolbar.get_by_text("Serve as API").click()
    docs = new_tab.value
    docs.wait_for_url("**/nb2api/apps/*/docs")
    app_url = docs.url.removesuffix("docs")
    toolbar.get_by_text("Stop API").wait_for()

    def set_last_cell_and_save(text: str) -> None:
        editor = page.locator(".jp-NotebookPanel:visible .jp-Cell .cm-content").last
        editor.click()
        page.locator(".jp-NotebookPanel:visible .jp-Notebook.jp-mod-editMode").wait_for()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(text)  # typed keys would be auto-indented
        first_line = text.splitlines()[1]
        page.wait_for_function(
            "([el, line]) => el.textContent.includes(line)",
            arg=[editor.element_handle(), first_line],
        )
        toolbar.locator("[data-command='docmanager:save']").click()
        # not time.sleep: the routes above run only inside playwright calls
        wait_until(lambda: first_line in (lab.root / "edited.ipynb").read_text(),
                   interval=0.1, pause=browser_pause(page), message="the notebook to be saved")

    with lab.client() as api:
        # a version that cannot be served: the dialog says so, the old version serves on
        set_last_cell_and_save("#| api\ndef broken(x: Nope) -> int:\n    return x\n")
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for()
        assert "previous version keeps serving" in dialog.inner_text()
        assert "'Nope' is not defined" in dialog.inner_text()
        dialog.get_by_role("button").last.click()
        dialog.wait_for(state="detached")
        assert api.post(f"{app_url}add", json={"a": 1}).json() == 2

        # fixed and saved: the new route is served
        set_last_cell_and_save("#| api\ndef triple(x: int) -> int:\n    return 3 * x\n")
        wait_until(lambda: "/triple" in api.get(f"{app_url}openapi.json").json()["paths"],
                   timeout=60, interval=0.2, pause=browser_pause(page),
                   message="the saved notebook to be reloaded")
        assert api.post(f"{app_url}triple", json={"x": 5}).json() == 15
    toolbar.get_by_text("Stop API").click()
    docs.close()
    page.close()
    assert offsite == []
