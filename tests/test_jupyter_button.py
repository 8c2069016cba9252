"""End to end: JupyterLab in headless Chromium, the "Serve as API" button, the served /docs.

Needs Debian's chromium at /usr/bin/chromium (no browser download). Under CI (``CI`` set)
a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from jupyter_helpers import TOKEN, copy_notebook, start_jupyter

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
    work = tmp_path_factory.mktemp("lab")
    settings = work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no news pop-up and no update check: they would cover the toolbar and go online
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    server = start_jupyter(
        work,
        app="lab",
        env={
            "JUPYTERLAB_SETTINGS_DIR": str(work / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        },
    )
    copy_notebook("jupyter_ok.ipynb", server.root / "greeter.ipynb")
    copy_notebook("jupyter_broken.ipynb", server.root / "broken.ipynb")
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

        context.route("**/*", local_only)  # every server here is on 127.0.0.1
        yield context, offsite
        context.close()
        browser.close()


def open_notebook(context, lab, name: str):
    """Open a notebook in a fresh workspace; return the page and the notebook's panel."""
    page = context.new_page()
    page.goto(f"{lab.url}lab/tree/{name}?reset&token={TOKEN}")
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-Cell").first.wait_for()
    assert panel.count() == 1
    return page, panel.locator(".jp-NotebookPanel-toolbar")


def test_serve_as_api_opens_the_docs(lab, browser_context):
    context, offsite = browser_context
    page, toolbar = open_notebook(context, lab, "greeter.ipynb")
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
    assert sorted(paths) == ["/add", "/hello/{name}"]

    # the toolbar now shows the served state and offers to stop
    toolbar.get_by_text("Stop API").wait_for()
    assert not serve.is_visible()
    with lab.client() as api:
        served = api.get("nb2api/api/apps").json()
        assert [app["path"] for app in served] == ["greeter.ipynb"]
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
