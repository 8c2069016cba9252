"""The API panel's figures: its Prometheus parser and window arithmetic, run in Node on the
extension's compiled module (``labextension/lib``, built by the package install)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "labextension" / "lib" / "metrics.js"

SCRAPE_1 = """\
# HELP nb2api_requests_total HTTP requests answered
# TYPE nb2api_requests_total counter
nb2api_requests_total{method="POST",route="/add",status="200"} 10.0
nb2api_requests_total{method="POST",route="/add",status="500"} 0.0
nb2api_request_duration_seconds_bucket{le="0.005",method="POST",route="/add"} 5.0
nb2api_request_duration_seconds_bucket{le="0.01",method="POST",route="/add"} 10.0
nb2api_request_duration_seconds_bucket{le="0.1",method="POST",route="/add"} 10.0
nb2api_request_duration_seconds_bucket{le="+Inf",method="POST",route="/add"} 10.0
nb2api_pool_busy_workers{pool="thread"} 1.0
"""
SCRAPE_2 = """\
nb2api_requests_total{method="POST",route="/add",status="200"} 16.0
nb2api_requests_total{method="POST",route="/add",status="500"} 4.0
nb2api_request_duration_seconds_bucket{le="0.005",method="POST",route="/add"} 5.0
nb2api_request_duration_seconds_bucket{le="0.01",method="POST",route="/add"} 10.0
nb2api_request_duration_seconds_bucket{le="0.1",method="POST",route="/add"} 20.0
nb2api_request_duration_seconds_bucket{le="+Inf",method="POST",route="/add"} 20.0
nb2api_requests_total{method="GET",route="/say \\"hi\\"",status="200"} 1.0
"""

SCRIPT = """
const m = await import(process.argv[1]);
const [one, two] = JSON.parse(process.argv[2]);
const window = new m.MetricsWindow(300000);
window.add(m.scrape(m.parseMetrics(one), 1000));
const first = window.figures('POST /add');
window.add(m.scrape(m.parseMetrics(two), 4000));
const second = window.figures('POST /add');
window.add(m.scrape(m.parseMetrics(one), 7000));  // counters went back: a new child
const restarted = window.figures('POST /add');
const late = new m.MetricsWindow(5000);
late.add(m.scrape(m.parseMetrics(one), 0));
late.add(m.scrape(m.parseMetrics(two), 4000));
late.add(m.scrape(m.parseMetrics(two), 9000));
console.log(JSON.stringify({
  first, second, restarted, late: late.figures('POST /add'),
  quoted: m.parseMetrics(two).at(-1).labels.route,
  gauges: window.latest.gauges.map(g => g.name),
}));
"""


@pytest.fixture(scope="module")
def node():
    path = shutil.which("node")
    assert path is not None, "Node builds the JupyterLab extension; it must be on PATH"
    assert LIB.exists(), f"{LIB} is built by `pip install -e .` (jlpm build)"
    return path


def test_figures_over_the_window(node):
    out = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, LIB.as_uri(),
         json.dumps([SCRAPE_1, SCRAPE_2])],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    result = json.loads(out)
    # one scrape: the counts since the child started
    assert result["first"]["requests"] == 10 and result["first"]["errorRate"] == 0
    assert result["first"]["p50"] == pytest.approx(0.005)
    # two scrapes: the differences; 10 more requests, 4 of them 5xx, all between 10 and 100 ms
    second = result["second"]
    assert second["requests"] == 10 and second["errorRate"] == pytest.approx(0.4)
    assert second["p50"] == pytest.approx(0.01 + 0.09 * 0.5)
    assert second["p99"] == pytest.approx(0.01 + 0.09 * 0.99)
    assert second["series"] == [10]
    # the counters dropped: a new child, and the window starts again from its counts
    assert result["restarted"]["requests"] == 10 and result["restarted"]["series"] == []
    # a 5 s window keeps the newest scrape older than the window as its start
    assert result["late"]["requests"] == 0 and result["late"]["series"] == [0]
    assert result["quoted"] == '/say "hi"'
    assert result["gauges"] == ["nb2api_pool_busy_workers"]
