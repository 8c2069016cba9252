"""The hand-written FastAPI app that nb2api is measured against: the same routes, by hand.

Run: python bench/handwritten.py --port 8001 [--workers 2] [--no-access-log]
"""

from __future__ import annotations

import argparse

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

rng = np.random.default_rng(0)
MATRIX = rng.normal(size=(600, 600))

app = FastAPI(title="handwritten")


class AddRequest(BaseModel):
    a: float
    b: float


class SvdRequest(BaseModel):
    n: int = 600


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ping")
async def ping() -> str:
    return "pong"


@app.post("/add")
async def add(body: AddRequest) -> float:
    return body.a + body.b


@app.post("/add_sync")
def add_sync(body: AddRequest) -> float:
    return body.a + body.b


@app.post("/svd")
def svd(body: SvdRequest | None = None) -> float:
    n = body.n if body else 600
    return float(np.linalg.svd(MATRIX[:n, :n], compute_uv=False)[0])


@app.post("/svd_blocking")
async def svd_blocking(body: SvdRequest | None = None) -> float:
    """The mistake nb2api avoids: CPU work in an ``async def`` blocks the event loop."""
    n = body.n if body else 600
    return float(np.linalg.svd(MATRIX[:n, :n], compute_uv=False)[0])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args()
    target = app if args.workers == 1 else "handwritten:app"
    uvicorn.run(target, host="127.0.0.1", port=args.port, workers=args.workers,
                access_log=not args.no_access_log)


if __name__ == "__main__":
    main()
