"""``nb2api mcp NOTEBOOK``: the same tools over stdio, for desktop agents that start a local
process.

stdout carries the protocol's messages and nothing else: before the notebook loads, file
descriptor 1 is pointed at stderr, so what cells print (``print``, ``!commands``, C libraries)
goes to stderr, and the protocol writes to a private copy of the real stdout.
"""

from __future__ import annotations

import os
import sys
from io import TextIOWrapper
from typing import BinaryIO

import anyio
from fastapi import FastAPI
from mcp.server.stdio import stdio_server

from .server import build_server


def divert_stdout() -> BinaryIO:
    """Point fd 1 (and so ``print``) at stderr; return the real stdout, for the protocol."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    return protocol


def serve_stdio(app: FastAPI, protocol: BinaryIO) -> None:
    """Answer MCP messages on stdin with ``app``'s tools on ``protocol`` until stdin closes,
    within the app's lifespan (its pools start and stop with it)."""
    server = build_server(app)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            stdout = anyio.wrap_file(TextIOWrapper(protocol, encoding="utf-8", write_through=True))
            async with stdio_server(stdout=stdout) as (read, write):
                await server.run(read, write, server.create_initialization_options())

    anyio.run(run)
