"""nb2api's serving benchmark: one command, servers side by side, ratios measured in one run.

    python bench/run.py            # everything, about 6 minutes
    python bench/run.py --quick    # fewer and shorter rounds
    python bench/run.py --only overhead,kg
    python bench/run.py --quick --only fastpath   # nb2api with and without its fast path
    python bench/run.py --quick --only tracing    # --otel to a local OTLP receiver, and off

Every server is a subprocess on a free 127.0.0.1 port; load comes from wrk (Debian's package) on
127.0.0.1, bounded by -d. Rounds alternate the order (A B, B A, ...) so drift on a shared machine
hits both sides; the report gives medians of the per-round ratios and the spread of each side.
Needs: wrk, and bench/requirements.txt (Jupyter Kernel Gateway) for the Kernel Gateway comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ADD_BODY = '{"a": 1.5, "b": 2.25}'
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    started_in: float  # seconds from spawn to the first 200

    def rss_mib(self) -> float:
        """Resident memory of the server process and its children (workers), MiB."""
        pids = [self.process.pid, *_children(self.process.pid)]
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except Exception:
        return 0


@contextlib.contextmanager
def start(name: str, command: list[str], probe: str, cwd: Path = ROOT,
          timeout: float = 120.0, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env={**ENV, **(env or {})}, stdout=log,
                               stderr=subprocess.STDOUT, preexec_fn=_raise_nofile,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while _get(url + probe, timeout=1.0) != 200:
            if process.poll() is not None or time.perf_counter() - began > timeout:
                raise RuntimeError(f"{name} did not start:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.005)
        yield Server(name, url, process, time.perf_counter() - began)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.unlink(log.name)


def nb2api(notebook: str = "bench.ipynb", *args: str) -> tuple[str, list[str], str]:
    return ("nb2api", [sys.executable, "-m", "nb2api", "serve", str(BENCH / notebook),
                       "--host", "127.0.0.1", "--port", "{port}", "--log-format", "json", *args],
            "/healthz")


def handwritten(*args: str) -> tuple[str, list[str], str]:
    return ("fastapi", [sys.executable, str(BENCH / "handwritten.py"), "--port", "{port}", *args],
            "/healthz")


def kernel_gateway() -> tuple[str, list[str], str]:
    return ("kernel-gateway", [
        sys.executable, "-m", "jupyter", "kernelgateway",
        "--KernelGatewayApp.api=kernel_gateway.notebook_http",
        f"--KernelGatewayApp.seed_uri={BENCH / 'kernel_gateway.ipynb'}",
        "--KernelGatewayApp.ip=127.0.0.1", "--KernelGatewayApp.port={port}",
    ], "/healthz")


# --- load -----------------------------------------------------------------------------------

@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) and non-2xx answers


_SCRIPTS = tempfile.mkdtemp(prefix="nb2api-bench-")


def _script(method: str, body: str | None) -> str:
    path = Path(_SCRIPTS) / f"{method}-{abs(hash(body))}.lua"
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines += [f"wrk.body = '{body}'", 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, *, seconds: float, connections: int, threads: int = 2, method: str = "POST",
        body: str | None = ADD_BODY, timeout: str = "10s") -> Load:
    duration = f"-d{max(1, round(seconds))}s"
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", duration,
               f"--timeout={timeout}", "--latency", "-s", _script(method, body), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         preexec_fn=_raise_nofile, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                          out):
        errors += sum(int(x) for x in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    return Load(rps, p50, p99, total, errors)


def settle(server: Server, within_ms: float = 50.0, limit: float = 60.0) -> None:
    """Wait until a probe answers quickly (Kernel Gateway works off abandoned requests)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        began = time.perf_counter()
        ok = _get(server.url + "/healthz", timeout=5) == 200
        if ok and (time.perf_counter() - began) * 1000 < within_ms:
            return
        time.sleep(0.5)


# --- report ---------------------------------------------------------------------------------

RESULTS: dict[str, object] = {}


def say(text: str = "") -> None:
    print(text, flush=True)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def alternate(a: Server, b: Server, rounds: int, measure) -> tuple[list, list]:
    """Run ``measure`` on a and b in alternating order; lists of results for each."""
    ra, rb = [], []
    for i in range(rounds):
        order = [(a, ra), (b, rb)] if i % 2 == 0 else [(b, rb), (a, ra)]
        for server, results in order:
            results.append(measure(server))
    return ra, rb


def compare(title: str, key: str, a: Server, b: Server, rounds: int, measure) -> float:
    ra, rb = alternate(a, b, rounds, measure)
    ratios = [x.rps / y.rps for x, y in zip(ra, rb, strict=True)]
    ratio = statistics.median(ratios)
    say(f"{title}")
    for server, results in ((a, ra), (b, rb)):
        rps = [r.rps for r in results]
        say(f"  {server.name:<16} req/s median {statistics.median(rps):>9,.0f}  "
            f"(spread {spread(rps)})  p50 {statistics.median([r.p50_ms for r in results]):.2f} ms"
            f"  p99 {statistics.median([r.p99_ms for r in results]):.2f} ms  "
            f"errors {sum(r.errors for r in results)}")
    say(f"  ratio {a.name}/{b.name}: median {ratio:.3f} "
        f"(rounds {', '.join(f'{x:.3f}' for x in ratios)})")
    RESULTS[key] = {"ratio": ratio, "ratios": ratios,
                    a.name: [r.__dict__ for r in ra], b.name: [r.__dict__ for r in rb]}
    return ratio


# --- experiments ----------------------------------------------------------------------------

def overhead(args) -> None:
    with start(*nb2api()) as ours, start(*handwritten()) as theirs, \
            start(*handwritten("--no-access-log")) as quiet:
        quiet.name = "fastapi-nolog"
        for server in (ours, theirs, quiet):
            wrk(server.url + "/add", seconds=2, connections=64)  # warm up
        d = args.seconds

        def load(path):
            return lambda s: wrk(s.url + path, seconds=d, connections=64)

        compare("overhead: POST /add (async def), 64 connections, metrics + JSON request log on; "
                "FastAPI with uvicorn's default access log", "overhead_async",
                ours, theirs, args.rounds, load("/add"))
        compare("overhead: POST /add_sync (plain def, worker pool)", "overhead_sync",
                ours, theirs, max(2, args.rounds - 2), load("/add_sync"))
        compare("strict: nb2api (metrics + request log) against FastAPI with no access log at "
                "all", "overhead_nolog", ours, quiet, max(2, args.rounds - 2), load("/add"))


def fastpath(args) -> None:
    """What the fast path buys: the same notebook served with and without --no-fast-path."""
    with start(*nb2api()) as fast, start(*nb2api("bench.ipynb", "--no-fast-path")) as plain:
        plain.name = "no-fast-path"
        for server in (fast, plain):
            wrk(server.url + "/add", seconds=2, connections=64)  # warm up

        def load(path):
            return lambda s: wrk(s.url + path, seconds=args.seconds, connections=64)

        compare("fast path: POST /add (async def), 64 connections, the same notebook with and "
                "without --no-fast-path", "fastpath_async", fast, plain, args.rounds, load("/add"))
        compare("fast path: POST /add_sync (plain def, worker pool)", "fastpath_sync",
                fast, plain, max(2, args.rounds - 2), load("/add_sync"))


def kg(args) -> None:
    with start(*nb2api()) as ours, start(*kernel_gateway(), timeout=180) as gateway:
        wrk(ours.url + "/add", seconds=2, connections=64)
        wrk(gateway.url + "/add", seconds=2, connections=16)
        settle(gateway)

        def measure(server):
            result = wrk(server.url + "/add", seconds=args.seconds, connections=64, timeout="30s")
            if server is gateway:
                settle(gateway)
            return result

        compare("against Jupyter Kernel Gateway notebook-http: POST /add, 64 connections",
                "kernel_gateway", ours, gateway, 2, measure)


def event_loop(args) -> None:
    say("event loop: /healthz latency (1 connection) while 8 connections keep every worker on "
        "a 600x600 SVD (nb2api's default pool: min(32, CPUs + 4) threads)")
    with start(*nb2api("bench.ipynb")) as ours, start(*handwritten()) as theirs:
        RESULTS["event_loop"] = {}
        cases = [(ours, "/svd"), (theirs, "/svd"), (theirs, "/svd_blocking")]
        found: dict[str, dict[str, list[float]]] = {
            f"{s.name} {heavy}": {"p99_ms": [], "p50_ms": [], "heavy_rps": []}
            for s, heavy in cases
        }

        def measure(server: Server, heavy: str) -> None:
            background = subprocess.Popen(
                ["wrk", "-t1", "-c8", f"-d{max(1, round(args.seconds)) + 4}s",
                 "--timeout=30s", "-s", _script("POST", "{}"), server.url + heavy],
                stdout=subprocess.PIPE, text=True)
            time.sleep(2)
            probe = wrk(server.url + "/healthz", seconds=args.seconds, connections=1,
                        threads=1, method="GET", body=None, timeout="30s")
            out = background.communicate()[0]
            figures = found[f"{server.name} {heavy}"]
            figures["heavy_rps"].append(
                float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
            figures["p99_ms"].append(probe.p99_ms)
            figures["p50_ms"].append(probe.p50_ms)

        # Rounds alternate the order of the servers, so drift on a shared machine hits all.
        for i in range(max(2, args.rounds - 2)):
            for server, heavy in (cases if i % 2 == 0 else cases[::-1]):
                measure(server, heavy)
        for label, figures in found.items():
            p99s, p50s = figures["p99_ms"], figures["p50_ms"]
            say(f"  {label:<26} /healthz p50 {statistics.median(p50s):7.2f} ms  p99 "
                f"{statistics.median(p99s):8.2f} ms (spread {min(p99s):.2f}-{max(p99s):.2f})  "
                f"heavy route {statistics.median(figures['heavy_rps']):.1f} req/s")
        RESULTS["event_loop"] = found


def _thousand(server: Server, *, path: str, method: str, body: str | None,
              seconds: float) -> Load:
    return wrk(server.url + path, seconds=seconds, connections=1000, timeout="10s",
               method=method, body=body)


def connections(args) -> None:
    RESULTS["connections"] = {}
    with start(*nb2api("bench.ipynb", "--workers", "2")) as ours, \
            start(*handwritten("--workers", "2")) as theirs:
        for method, path, body in (("POST", "/add", ADD_BODY), ("GET", "/ping", None)):
            say(f"1,000 connections, --workers 2, {method} {path}")
            for server in (ours, theirs):
                wrk(server.url + path, seconds=2, connections=200, method=method, body=body)
            ra, rb = alternate(ours, theirs, max(2, args.rounds - 2), functools.partial(
                _thousand, path=path, method=method, body=body, seconds=args.seconds))
            for server, results in ((ours, ra), (theirs, rb)):
                say(f"  {server.name:<16} failed {sum(r.errors for r in results)} of "
                    f"{sum(r.requests for r in results):,}  median latency "
                    f"{statistics.median([r.p50_ms for r in results]):.1f} ms  (rounds "
                    f"{', '.join(f'{r.p50_ms:.1f}' for r in results)})  p99 "
                    f"{statistics.median([r.p99_ms for r in results]):.1f} ms  req/s "
                    f"{statistics.median([r.rps for r in results]):,.0f}")
                RESULTS["connections"][f"{server.name} {method} {path}"] = [
                    r.__dict__ for r in results]


def startup(args) -> None:
    say("start: spawn to first 200 on /healthz, and idle memory (RSS after 200 requests)")
    times: dict[str, list[float]] = {"nb2api": [], "fastapi": []}
    rss: dict[str, list[float]] = {"nb2api": [], "fastapi": []}
    setup = []
    for i in range(max(3, args.rounds)):
        for spec in ((nb2api(), handwritten()) if i % 2 == 0 else (handwritten(), nb2api())):
            with start(*spec) as server:
                times[server.name].append(server.started_in)
                for _ in range(200):
                    _get(server.url + "/healthz")
                time.sleep(1)
                rss[server.name].append(server.rss_mib())
                if server.name == "nb2api":
                    text = urllib.request.urlopen(server.url + "/metrics").read().decode()
                    setup.append(float(re.search(r"^nb2api_notebook_load_seconds (\S+)", text,
                                                 re.M).group(1)))
    ours, theirs = statistics.median(times["nb2api"]), statistics.median(times["fastapi"])
    setup_s = statistics.median(setup)
    say(f"  nb2api  start median {ours:.2f} s (spread {min(times['nb2api']):.2f}-"
        f"{max(times['nb2api']):.2f}), of which setup cells {setup_s:.2f} s")
    say(f"  fastapi start median {theirs:.2f} s (spread {min(times['fastapi']):.2f}-"
        f"{max(times['fastapi']):.2f})")
    say(f"  target 1.2 x {theirs:.2f} + {setup_s:.2f} = {1.2 * theirs + setup_s:.2f} s: "
        f"{'met' if ours <= 1.2 * theirs + setup_s else 'NOT met'}")
    ro, rt = statistics.median(rss["nb2api"]), statistics.median(rss["fastapi"])
    say(f"  idle RSS nb2api {ro:.0f} MiB, fastapi {rt:.0f} MiB: +{ro - rt:.0f} MiB "
        f"(target within 30 MB: {'met' if (ro - rt) * 1.048576 <= 30 else 'NOT met'})")
    RESULTS["startup"] = {"seconds": times, "setup_seconds": setup, "rss_mib": rss}


def processes(args) -> None:
    say("pure-Python CPU work (sum of squares, 200k terms): thread pool against process pool")
    RESULTS["processes"] = {}
    with start(*nb2api("bench_cpu.ipynb", "--processes", "2", "--max-workers", "4")) as ours:
        for path in ("/spin_thread", "/spin"):
            wrk(ours.url + path, seconds=2, connections=2, body="{}")
            one = wrk(ours.url + path, seconds=args.seconds, connections=1, threads=1, body="{}")
            many = wrk(ours.url + path, seconds=args.seconds, connections=4, body="{}")
            say(f"  {path:<13} 1 connection {one.rps:6.1f} req/s, 4 connections {many.rps:6.1f} "
                f"req/s: x{many.rps / one.rps:.2f} with concurrency")
            RESULTS["processes"][path] = {"one": one.__dict__, "four": many.__dict__}


# An OTLP/HTTP collector stand-in: answers every export 200 and counts the spans it got
# (GET / answers the count). HTTP/1.1, connections kept open, as collectors do.
_OTLP_SINK = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

spans = 0
lock = threading.Lock()

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global spans
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with lock:
            spans += count
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = str(spans).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def _spans_received(receiver: Server) -> int:
    with urllib.request.urlopen(receiver.url + "/", timeout=5) as response:
        return int(response.read())


def _exporter_cpu(server: Server) -> float:
    """CPU seconds of the server's span exporter processes (serve/otlp.py run as a script)."""
    total = 0
    for pid in _children(server.process.pid):
        with contextlib.suppress(OSError):
            if b"otlp.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """The package as it was at git ``ref`` (``main`` by default), in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="nb2api-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "nb2api"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cpu_seconds(server: Server) -> float:
    """CPU time (user + system) of the server process and its children (workers) so far."""
    total = 0
    for pid in (server.process.pid, *_children(server.process.pid)):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / os.sysconf("SC_CLK_TCK")


def cpu_per_request(title: str, key: str, a: Server, b: Server, rounds: int, measure) -> None:
    """``compare``, and the server's CPU microseconds per answered request on each side: a
    figure that another process's load on a shared machine changes less than req/s."""
    cpu: dict[str, list[float]] = {a.name: [], b.name: []}

    def measured(server: Server) -> Load:
        before = cpu_seconds(server)
        result = measure(server)
        cpu[server.name].append((cpu_seconds(server) - before) / max(result.requests, 1) * 1e6)
        return result

    compare(title, key, a, b, rounds, measured)
    ratios = [x / y for x, y in zip(cpu[a.name], cpu[b.name], strict=True)]
    say(f"  CPU per request: {a.name} {statistics.median(cpu[a.name]):.0f} us, {b.name} "
        f"{statistics.median(cpu[b.name]):.0f} us; ratio median {statistics.median(ratios):.3f} "
        f"(rounds {', '.join(f'{x:.3f}' for x in ratios)})")
    RESULTS[key]["cpu_us_per_request"] = cpu  # type: ignore[index]


def tracing(args) -> None:
    """What tracing costs: --otel exporting every span over OTLP/HTTP to a local receiver,
    against the same notebook untraced; and tracing off against the code at --baseline."""
    sink = ("otlp-sink", [sys.executable, "-c", _OTLP_SINK, "{port}"], "/")
    with start(*sink) as receiver, start(*nb2api()) as off, \
            start(*nb2api("bench.ipynb", "--otel"),
                  env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                       "OTEL_SERVICE_NAME": "bench"}) as traced:
        traced.name = "otel"
        sent = {"spans": 0, "requests": 0, "exporter_cpu": 0.0, "receiver_cpu": 0.0}

        def load(path, spans_per_request, seconds=args.seconds):
            def measure(server: Server) -> Load:
                before, received_before = _exporter_cpu(server), cpu_seconds(receiver)
                result = wrk(server.url + path, seconds=seconds, connections=64)
                if server is traced:
                    sent["spans"] += result.requests * spans_per_request
                    sent["requests"] += result.requests
                    sent["exporter_cpu"] += _exporter_cpu(server) - before
                    sent["receiver_cpu"] += cpu_seconds(receiver) - received_before
                return result

            return measure

        for server in (off, traced):
            load("/add", 4, seconds=2)(server)  # warm up

        cpu_per_request("tracing: POST /add (async def), 64 connections, --otel exporting to a "
                        "local OTLP receiver against tracing off", "tracing_async", traced, off,
                        args.rounds, load("/add", 4))
        cpu_per_request("tracing: POST /add_sync (plain def, worker pool)", "tracing_sync",
                        traced, off, max(2, args.rounds - 2), load("/add_sync", 5))
        # Spans still on their way: wait until the count stops growing (at most 20 s).
        received, deadline = -1, time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(2)
            now = _spans_received(receiver)
            if now == received:
                break
            received = now
        say(f"  spans at the receiver: {received:,} of {sent['spans']:,} "
            f"({received / max(sent['spans'], 1):.1%}); the exporter process's CPU: "
            f"{sent['exporter_cpu'] / max(sent['requests'], 1) * 1e6:.0f} us per traced request "
            f"(in the CPU per request above); the receiver's: "
            f"{sent['receiver_cpu'] / max(sent['requests'], 1) * 1e6:.0f} us (not in it)")
        RESULTS["tracing_delivery"] = {"received": received, **sent}
    with baseline_tree(args.baseline) as tree, start(*nb2api()) as off, \
            start(*nb2api(), env={"PYTHONPATH": str(tree)}) as before:
        off.name, before.name = "tracing-off", args.baseline
        for server in (off, before):
            wrk(server.url + "/add", seconds=2, connections=64)
        cpu_per_request(f"tracing off: POST /add against the code at {args.baseline}",
                        "tracing_off", off, before, args.rounds,
                        lambda s: wrk(s.url + "/add", seconds=args.seconds, connections=64))


EXPERIMENTS = {"overhead": overhead, "fastpath": fastpath, "kg": kg, "event_loop": event_loop,
               "connections": connections, "startup": startup, "processes": processes,
               "tracing": tracing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(EXPERIMENTS),
                        help=f"comma-separated: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--baseline", default="main",
                        help="git ref whose code 'tracing' compares tracing off against")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 3
    if shutil.which("wrk") is None:
        sys.exit("bench needs wrk: apt-get install -y wrk")
    say(f"nb2api bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{args.rounds} rounds of {args.seconds:g} s")
    for name in args.only.split(","):
        say()
        EXPERIMENTS[name.strip()](args)
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=1))
    shutil.rmtree(_SCRIPTS, ignore_errors=True)


if __name__ == "__main__":
    main()
