"""``nb2api test``: replay the notebook's examples through its app and check the answers.

The app is loaded in-process and every example goes to it as an HTTP request through the whole
app (ASGI transport, middleware and fast path included). Each answer is compared with the direct
call's result, encoded as the route encodes it (floats within ``rtol``); with ``against_saved``,
also with the output Jupyter saved for the example, which catches a model or data that changed
since the notebook last ran. :func:`junit_xml` writes the outcome for CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from starlette.responses import Response

from .load.examples import NoSavedValue, saved_value
from .serve import create_app
from .serve.examples import RouteExample
from .settings import Settings
from .types.compare import differences
from .types.encoding import dumps

Status = Literal["pass", "fail", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """One example's verdict; ``diff`` says where a failed one differs."""

    example: RouteExample
    status: Status
    ms: float
    diff: tuple[str, ...] = ()
    note: str = ""


@dataclass
class ContractReport:
    notebook: Path
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("fail") else 0

    def summary(self) -> str:
        text = f"{self.count('pass')} passed, {self.count('fail')} failed"
        skipped = self.count("skipped")
        return text + (f", {skipped} skipped" if skipped else "") + f" in {self.seconds:.2f} s"

    def lines(self) -> list[str]:
        """One line per example (pass, fail or skipped; route; name; milliseconds), a short
        diff under each failure."""
        route_width = max((len(o.example.route) for o in self.outcomes), default=0)
        name_width = max((len(o.example.name) for o in self.outcomes), default=0)
        lines = []
        for outcome in self.outcomes:
            example = outcome.example
            line = (f"{outcome.status:<7} {example.route:<{route_width}}  "
                    f"{example.name:<{name_width}}  {outcome.ms:7.1f} ms")
            lines.append(line + (f"  ({outcome.note})" if outcome.note else ""))
            lines += [f"    {text}" for text in outcome.diff]
        return lines


def run_contract(notebook: str | Path, settings: Settings | None = None, *, rtol: float = 1e-9,
                 against_saved: bool = False) -> ContractReport:
    """Load ``notebook`` and replay its examples. Raises :class:`NotebookError` when it cannot
    be served (an example that does not fit its route included)."""
    config = (settings or Settings()).updated(examples=False)  # answers are computed here
    with contextlib.redirect_stdout(sys.stderr):  # what cells print is not the report
        app = create_app(notebook, config)
        started = time.perf_counter()
        outcomes = asyncio.run(_replay(app, app.state.examples, config.bearer_token(), rtol,
                                       against_saved))
    return ContractReport(Path(notebook), outcomes, time.perf_counter() - started)


async def _replay(app: Any, examples: list[RouteExample], token: str | None, rtol: float,
                  against_saved: bool) -> list[Outcome]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app)
    outcomes = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://nb2api.test", timeout=None) as client:
        for example in examples:
            started = time.perf_counter()
            answer = await client.request(
                example.spec.method, example.path, params=example.query or None,
                json=example.body, headers={**headers, **example.headers},
            )
            ms = (time.perf_counter() - started) * 1000
            direct = await example.answer()
            diff = _compare(direct, answer, rtol)
            if diff or not against_saved:
                outcomes.append(Outcome(example, "fail" if diff else "pass", ms, tuple(diff)))
                continue
            outcomes.append(_against_saved(example, answer, rtol, ms))
    return outcomes


def _compare(direct: Response, answer: httpx.Response, rtol: float) -> list[str]:
    """Where the HTTP answer differs from the direct call's (empty when they agree)."""
    if direct.status_code != answer.status_code:
        return [f"status: direct call {direct.status_code}, HTTP {answer.status_code}: "
                f"{answer.text[:200]}"]
    if direct.status_code != 200:
        return [f"the example fails: {direct.status_code} {bytes(direct.body)[:200]!r}"]
    if (direct.media_type or "").startswith("application/json"):
        try:
            received = answer.json()
        except ValueError:
            return [f"HTTP answer is not JSON: {answer.text[:200]!r}"]
        return differences(json.loads(direct.body), received, rtol,
                           labels=("direct call", "HTTP"))
    if bytes(direct.body) != answer.content:
        return [f"the {direct.media_type} bytes differ: direct call {len(direct.body)} bytes, "
                f"HTTP {len(answer.content)}"]
    return []


def _against_saved(example: RouteExample, answer: httpx.Response, rtol: float,
                   ms: float) -> Outcome:
    try:
        saved = json.loads(dumps(saved_value(example.example.saved)))  # NaN as the route: null
    except NoSavedValue as reason:
        return Outcome(example, "skipped", ms, note=str(reason))
    except (TypeError, ValueError):
        return Outcome(example, "skipped", ms, note="the saved output is not JSON data")
    try:
        now = answer.json()
    except ValueError:
        return Outcome(example, "skipped", ms, note="the answer is not JSON")
    diff = differences(saved, now, rtol, labels=("saved", "now"))
    return Outcome(example, "fail" if diff else "pass", ms,
                   tuple(["differs from the output saved in the notebook:", *diff] if diff else []))


def junit_xml(report: ContractReport) -> str:
    """The report as JUnit XML: one testcase per example, classname its route."""
    suite = ElementTree.Element(
        "testsuite", name=f"nb2api test {report.notebook.name}",
        tests=str(len(report.outcomes)), failures=str(report.count("fail")), errors="0",
        skipped=str(report.count("skipped")), time=f"{report.seconds:.3f}",
    )
    for outcome in report.outcomes:
        case = ElementTree.SubElement(
            suite, "testcase", classname=outcome.example.route, name=outcome.example.name,
            time=f"{outcome.ms / 1000:.3f}",
        )
        if outcome.status == "fail":
            failure = ElementTree.SubElement(case, "failure", message=outcome.diff[0][:200]
                                             if outcome.diff else "failed")
            failure.text = "\n".join(outcome.diff)
        elif outcome.status == "skipped":
            ElementTree.SubElement(case, "skipped", message=outcome.note)
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
