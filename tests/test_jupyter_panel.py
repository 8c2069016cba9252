"""End to end: the API panel in JupyterLab's right sidebar, in headless Chromium.

JupyterLab runs under a hub-style base URL (``/user/alice/``), so every URL the panel makes
is checked under a prefix. The panel reads only the Jupyter server: the browser context
refuses every other host.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import md, notebook_node, wait_until
from jupyter_helpers import TOKEN, put_notebook, start_jupyter, start_lab
from test_jupyter_button import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    TIMEOUT_MS,
    _require_browser,
    browser_pause,
)

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "images"
BASE_URL = "/user/alice/"

PRICING = (
    md("# Pricing\nA small pricing API."),
    "#| setup\nRATES = {'paris': 10.0, 'lyon': 7.5}",
    "#| api\ndef add(a: int, b: int = 1) -> int:\n    \"\"\"Add two numbers.\"\"\"\n    return a + b",
    "#| api\ndef _rate(city):\n    return RATES[city]\n\n\n"
    "def quote(city: str, area: float = 50.0) -> float:\n"
    "    \"\"\"Price a flat.\"\"\"\n    return _rate(city) * area",
    "print('exploration')",
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # a save from anywhere reloads the served notebook
    server = start_lab(tmp_path_factory.mktemp("panel"), base_url=BASE_URL, poll_interval=0.3)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    offsite: list[str] = []

    def local_only(route):
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    yield context
    context.close()
    assert offsite == []


def serve_in_lab(context, lab, name: str, *, fake_clock: bool = False):
    """Open ``name``, click "Serve as API" (closing the docs tab it opens), show the panel.

    With ``fake_clock`` the page's timers are Playwright's, which a test can pause and move."""
    put_notebook(lab.root / name, *PRICING)
    page = context.new_page()
    if fake_clock:
        page.clock.install()  # time still flows until the test pauses it
    page.goto(f"{lab.url}lab/tree/{name}?reset&token={TOKEN}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.locator(".jp-Cell").first.wait_for()
    with context.expect_page() as docs:
        notebook.locator(".jp-NotebookPanel-toolbar").get_by_text("Serve as API").click()
    docs.value.wait_for_url("**/nb2api/apps/*/docs")
    docs.value.close()
    page.locator(".jp-SideBar.jp-mod-right [data-id='nb2api-api-panel']").click()
    panel = page.locator("#nb2api-api-panel")
    panel.locator("li[data-route='POST /add']").wait_for()
    return page, notebook, panel


def app_of(lab, name: str) -> dict:
    """The served app of ``name``, its ``url`` made absolute (it carries the base URL)."""
    with lab.client() as api:
        [app] = [a for a in api.get("nb2api/api/apps").json() if a["path"] == name]
    app["url"] = lab.url.removesuffix(BASE_URL) + app["url"]
    return app


def stop_all(lab) -> None:
    with lab.client() as api:
        for app in api.get("nb2api/api/apps").json():
            api.delete(f"nb2api/api/apps/{app['id']}")


def test_the_panel_shows_the_urls_and_live_traffic(lab, context):
    page, _, panel = serve_in_lab(context, lab, "traffic.ipynb")
    app = app_of(lab, "traffic.ipynb")
    base = panel.locator("dd[data-link='base url'] code").inner_text()
    assert base == f"{lab.url}nb2api/apps/{app['id']}/"
    assert panel.locator("dd[data-link='docs'] a").get_attribute("href") == (
        f"{lab.url}nb2api/apps/{app['id']}/docs")
    assert panel.locator("dd[data-link='mcp'] code").inner_text() == (
        f"{lab.url}nb2api/apps/{app['id']}/mcp")
    assert re.fullmatch(r"[0-9a-f]{12}", panel.locator(".nb2api-version code").inner_text())
    assert "Add two numbers." in panel.locator("li[data-route='POST /add']").inner_text()
    routes = panel.locator("li.nb2api-route").evaluate_all(
        "items => items.map(item => item.dataset.route)")
    assert routes == ["POST /add", "POST /quote"]  # the notebook's, not nb2api's job endpoints
    assert "The saved version serves" in panel.locator(".nb2api-reload-state").inner_text()
    pause = browser_pause(page)

    def requests(route: str) -> int:
        return int(panel.locator(f"li[data-route='{route}'] .nb2api-requests b").inner_text())

    with lab.client() as api:
        for a in range(12):
            assert api.post(f"{app['url']}add", json={"a": a}).json() == a + 1
        wait_until(lambda: requests("POST /add") >= 12, pause=pause, timeout=60,
                   message="the panel to count the requests")
        sparkline = panel.locator("li[data-route='POST /add'] .nb2api-sparkline polyline")
        assert sum(int(v) for v in sparkline.get_attribute("data-values").split(",") if v) >= 12
        assert panel.locator("li[data-route='POST /add'] .nb2api-p50 b").inner_text().endswith("ms")
        assert panel.locator("li[data-route='POST /add'] .nb2api-error-rate b").inner_text() == "0%"
        for _ in range(3):
            api.post(f"{app['url']}add", json={"a": 1})
        wait_until(lambda: requests("POST /add") >= 15, pause=pause, timeout=60,
                   message="the counts to move")
    assert "thread pool" in panel.locator(".nb2api-pools").inner_text()
    with lab.client() as api:  # a job, through the proxy: the panel counts jobs by status
        accepted = api.post(f"{app['url']}add", json={"a": 1}, headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
    jobs = panel.locator(".nb2api-jobs")
    wait_until(lambda: jobs.count() and "succeeded 1" in jobs.inner_text(), pause=pause,
               timeout=60, message="the panel to count the job")

    # copy buttons put the URL on the clipboard
    panel.locator("dd[data-link='docs'] .nb2api-copy").click()
    assert page.evaluate("navigator.clipboard.readText()").endswith(f"/{app['id']}/docs")
    stop_all(lab)
    page.close()


def test_no_polling_while_the_panel_is_hidden(lab, context):
    page, _, panel = serve_in_lab(context, lab, "hidden.ipynb", fake_clock=True)
    scrapes: list[str] = []
    page.on("request", lambda r: scrapes.append(r.url)
            if r.url.partition("?")[0].endswith("/metrics") else None)
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)  # time moves only when told

    def scraped_after_a_period(before: int) -> bool:
        page.clock.run_for(3100)  # the next refresh is due (once the last one answered)
        return len(scrapes) > before

    for _ in range(2):
        before = len(scrapes)
        wait_until(lambda before=before: scraped_after_a_period(before), pause=browser_pause(page),
                   message="a scrape while the panel is shown")
    page.locator(".jp-SideBar.jp-mod-right [data-id='nb2api-api-panel']").click()  # hide it
    panel.wait_for(state="hidden")
    hidden = len(scrapes)
    for _ in range(10):  # ten refresh periods, each given the time to scrape
        page.clock.run_for(3100)
        page.evaluate("fetch('api/status').then(r => r.status)")  # a round trip to the server
    assert len(scrapes) <= hidden + 1  # at most the one in flight when it was hidden
    stop_all(lab)
    page.close()


def test_an_error_opens_the_cell_that_raised(lab, context):
    page, notebook, panel = serve_in_lab(context, lab, "errors.ipynb")
    app = app_of(lab, "errors.ipynb")
    with lab.client() as api:
        answer = api.post(f"{app['url']}quote", json={"city": "oslo"})
    assert answer.status_code == 500 and "Traceback" not in answer.text
    error_id = answer.json()["error_id"]
    item = panel.locator(f"li[data-error-id='{error_id}']")
    item.wait_for()
    assert "KeyError: 'oslo'" in item.inner_text()
    item.click()
    panel.locator(".nb2api-traceback").wait_for()
    assert "RATES[city]" in panel.locator(".nb2api-traceback").inner_text()
    # cell 4 (every cell counted, the markdown one too) defines _rate, which raised
    active = notebook.locator(".jp-Cell.jp-mod-active")
    wait_until(lambda: "def _rate" in active.inner_text(), pause=browser_pause(page),
               message="the raising cell to be active")
    assert notebook.locator(".jp-Cell").nth(3).get_attribute("class").count("nb2api-error-cell")
    stop_all(lab)
    page.close()


def test_a_broken_save_says_the_last_good_version_serves(lab, context):
    page, notebook, panel = serve_in_lab(context, lab, "reloads.ipynb")
    app = app_of(lab, "reloads.ipynb")
    broken = notebook_node(*PRICING[:2], "#| api\ndef add(a: Nope) -> int:\n    return a")
    (lab.root / "reloads.ipynb").write_text(json.dumps(broken))
    state = panel.locator(".nb2api-reload-state[data-state='last-good']")
    state.wait_for()
    assert "'Nope' is not defined" in state.inner_text()
    assert panel.locator(".nb2api-cell-link").inner_text() == "Go to cell 3, line 2"
    with lab.client() as api:  # the last good version answers meanwhile
        assert api.post(f"{app['url']}add", json={"a": 2}).json() == 3
    panel.locator(".nb2api-cell-link").click()
    third = notebook.locator(".jp-Cell").nth(2)  # the open document: cell 3 as it was loaded
    wait_until(lambda: "jp-mod-active" in third.get_attribute("class"),
               pause=browser_pause(page), message="cell 3 to be active")
    stop_all(lab)
    page.close()


def test_an_inserted_example_call_runs_in_the_kernel(lab, context):
    page, notebook, panel = serve_in_lab(context, lab, "calls.ipynb")
    notebook.locator(".jp-Cell").first.click()  # the active cell: the call goes below it
    before = notebook.locator(".jp-Cell").count()
    panel.locator("li[data-route='POST /add'] .nb2api-insert").click()
    wait_until(lambda: notebook.locator(".jp-Cell").count() == before + 1,
               pause=browser_pause(page), message="the call's cell")
    inserted = notebook.locator(".jp-Cell").nth(1)
    source = inserted.locator(".cm-content").inner_text()
    assert "httpx.request(" in source and '"POST"' in source
    assert f"{lab.url}nb2api/apps/" in source and '"a": 1' in source
    inserted.click()
    page.keyboard.press("Shift+Enter")
    output = inserted.locator(".jp-OutputArea-output")
    wait_until(lambda: output.count() > 0 and output.first.inner_text().strip() != "",
               pause=browser_pause(page), timeout=120, message="the kernel to run the call")
    assert output.first.inner_text().strip() == "2"  # add(a=1, b=1)
    stop_all(lab)
    page.close()


def test_the_panel_in_notebook_7(tmp_path, context):
    """Notebook 7's right sidebar holds the same panel, under the same base URL."""
    server = start_jupyter(tmp_path, app="notebook", base_url=BASE_URL, poll_interval=0)
    try:
        put_notebook(server.root / "nb7.ipynb", *PRICING)
        page = context.new_page()
        page.goto(f"{server.url}notebooks/nb7.ipynb?token={TOKEN}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        with context.expect_page() as docs:
            page.get_by_text("Serve as API").click()
        docs.value.wait_for_url("**/nb2api/apps/*/docs")
        docs.value.close()
        page.keyboard.press("Control+Shift+c")  # the command palette
        page.keyboard.insert_text("Show the API panel")
        page.locator(".lm-CommandPalette-item:visible", has_text="Show the API panel").click()
        panel = page.locator("#nb2api-api-panel")
        panel.locator("li[data-route='POST /quote']").wait_for()
        assert "Price a flat." in panel.inner_text()
        page.close()
    finally:
        server.stop()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshots_of_the_panel(lab, context, theme):
    with lab.client() as api:
        name = "JupyterLab Dark" if theme == "dark" else "JupyterLab Light"
        r = api.put("lab/api/settings/@jupyterlab/apputils-extension:themes",
                    json={"raw": json.dumps({"theme": name})})
        assert r.status_code in (200, 204), r.text
    page, _, panel = serve_in_lab(context, lab, f"screenshot-{theme}.ipynb")
    app = app_of(lab, f"screenshot-{theme}.ipynb")
    with lab.client() as api:
        for a in range(5):
            api.post(f"{app['url']}add", json={"a": a})
        api.post(f"{app['url']}quote", json={"city": "lyon"})
        api.post(f"{app['url']}quote", json={"city": "oslo"})
    panel.locator("li.nb2api-error").first.wait_for()
    wait_until(lambda: re.match(r"[1-9]", panel.locator(
        "li[data-route='POST /add'] .nb2api-requests b").inner_text()),
        pause=browser_pause(page), message="figures in the panel")
    page.locator("body[data-jp-theme-light='%s']" % ("true" if theme == "light" else "false")
                 ).wait_for(state="attached")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SCREENSHOTS / f"api-panel-{theme}.png"))
    assert (SCREENSHOTS / f"api-panel-{theme}.png").stat().st_size > 1000
    with lab.client() as api:
        api.put("lab/api/settings/@jupyterlab/apputils-extension:themes",
                json={"raw": json.dumps({"theme": "JupyterLab Light"})})
    stop_all(lab)
    page.close()
