"""Swagger UI's "Try it out" offers the notebook's examples in a drop-down, prefilled.

Headless Chromium on the served quickstart's /docs (offline assets). Needs Debian's chromium at
/usr/bin/chromium, as the JupyterLab button's test does.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXAMPLES, serve
from test_jupyter_button import CHROMIUM, CHROMIUM_FLAGS, TIMEOUT_MS, _require_browser


def test_try_it_out_offers_the_examples_prefilled():
    sync_playwright = _require_browser()
    with serve(EXAMPLES / "quickstart.ipynb") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server.base_url}/docs")
            operation = page.locator("#operations-default-predict")
            operation.locator(".opblock-summary").click()
            operation.locator(".try-out__btn").click()
            choice = operation.locator(".opblock-section-request-body select.examples-select-element")
            assert choice.locator("option").evaluate_all("os => os.map(o => o.value)") == [
                "setosa_like"]
            body = json.loads(operation.locator("textarea.body-param__text").input_value())
            assert body == {"flower": {"sepal_length": 5.1, "sepal_width": 3.5,
                                       "petal_length": 1.4, "petal_width": 0.2}}
            # A GET route's parameters offer it too. Swagger UI fills a parameter that has an
            # enum or a default with that first; picking the example fills in its values.
            species = page.locator("#operations-default-species_summary")
            species.locator(".opblock-summary").click()
            species.locator(".try-out__btn").click()
            name = species.locator("tr[data-param-name='name']")
            name.locator("select.examples-select-element").select_option(
                "species_summary cell 10 #1")
            assert name.locator("select:not(.examples-select-element)").input_value() == \
                "virginica"
            stat = species.locator("tr[data-param-name='stat']")
            stat.locator("select.examples-select-element").select_option(
                "species_summary cell 10 #1")
            assert stat.locator("input").input_value() == "median"
        finally:
            browser.close()


def test_the_quickstart_keeps_its_contract():
    from typer.testing import CliRunner

    from nb2api.cli import app as cli

    result = CliRunner().invoke(cli, ["test", str(Path(EXAMPLES) / "quickstart.ipynb"),
                                      "--against-saved"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("2 passed, 0 failed")
