"""A tool call over /mcp against the same REST call, sequential, on one server, in one run.

    python bench/bench_mcp.py            # 5 rounds of 300 calls per way
    python bench/bench_mcp.py --quick    # 3 rounds of 100

One ``nb2api serve bench/bench.ipynb`` on a free 127.0.0.1 port. Each round times, one call at a
time, ``POST /add`` and the tool ``add`` with the same arguments, in alternating order:

- ``rest``: the REST call, with httpx;
- ``mcp 2025``: ``tools/call`` as one JSON-RPC POST with the same httpx client, as a client of the
  handshake protocol (MCP 2025-11-25, after ``initialize``) sends it to a stateless server;
- ``mcp 2026``: the same with the 2026-07-28 per-request protocol (no handshake);
- ``ClientSession``: the official ``mcp`` client's ``call_tool`` over Streamable HTTP (its own
  validation and streams included: what an agent written with the SDK pays);
- ``+ progress``: the same with a ``progress_callback``, so the call carries a progress token
  and is answered as an event stream (``add`` reports none: the cost of the stream itself).

The report gives the median latency of each way and its ratio to REST (medians of per-round
ratios). The target: a tool call within 1.5x of the REST call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ARGUMENTS = {"a": 1.5, "b": 2.25}
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
_META_2026 = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
              "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
              "io.modelcontextprotocol/clientCapabilities": {}}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(notebook: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "nb2api", "serve", str(notebook), "--port", str(port),
         "--no-access-log"], stdout=log, stderr=subprocess.STDOUT, env=ENV,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    log.seek(0)
    raise SystemExit(f"nb2api serve did not start:\n{log.read().decode()}")


async def _timed(calls: int, call) -> list[float]:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return seconds


async def _round(url: str, calls: int, order: list[str]) -> dict[str, float]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    accept = "application/json, text/event-stream"
    legacy = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "add", "arguments": ARGUMENTS}}
    modern = {**legacy, "params": {**legacy["params"], "_meta": _META_2026}}
    medians: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url) as client, \
            httpx2.AsyncClient(timeout=60) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()

        async def rest():
            answer = await client.post("/add", json=ARGUMENTS)
            assert answer.status_code == 200, answer.text

        async def mcp_2025():
            answer = await client.post("/mcp", json=legacy, headers={
                "Accept": accept, "MCP-Protocol-Version": "2025-11-25"})
            assert answer.status_code == 200 and "structuredContent" in answer.text, answer.text

        async def mcp_2026():
            answer = await client.post("/mcp", json=modern, headers={
                "Accept": accept, "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "tools/call", "Mcp-Name": "add"})
            assert answer.status_code == 200 and "structuredContent" in answer.text, answer.text

        async def sdk():
            result = await session.call_tool("add", ARGUMENTS)
            assert not result.is_error

        async def heard(progress: float, total: float | None, message: str | None) -> None:
            pass

        async def sdk_progress():
            result = await session.call_tool("add", ARGUMENTS, progress_callback=heard)
            assert not result.is_error

        ways = {"rest": rest, "mcp 2025": mcp_2025, "mcp 2026": mcp_2026, "ClientSession": sdk,
                "+ progress": sdk_progress}
        for name in order:
            await _timed(calls // 10 + 5, ways[name])  # warm up
            medians[name] = statistics.median(await _timed(calls, ways[name]))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 calls")
    args = parser.parse_args()
    rounds, calls = (3, 100) if args.quick else (5, 300)
    process, url = _start(BENCH / "bench.ipynb")
    ways = ["rest", "mcp 2025", "mcp 2026", "ClientSession", "+ progress"]
    results: list[dict[str, float]] = []
    try:
        for n in range(rounds):
            order = ways if n % 2 == 0 else ways[::-1]
            results.append(asyncio.run(_round(url, calls, order)))
    finally:
        process.terminate()
        process.wait(30)
    print(f"sequential calls of add(a, b), {rounds} rounds x {calls} calls, medians:")
    for way in ways:
        ms = statistics.median(r[way] for r in results) * 1000
        ratio = statistics.median(r[way] / r["rest"] for r in results)
        print(f"  {way:<14} {ms:7.3f} ms   {ratio:5.2f}x REST")


if __name__ == "__main__":
    main()
