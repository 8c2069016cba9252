"""Big uploads: bounded in rows and decoded bytes (413), and read off the event loop."""

from __future__ import annotations

import io
import threading

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import serve
from fastapi.testclient import TestClient

from nb2api import create_app

SALES = (
    "#| setup\nfrom typing import Annotated\nimport pandas as pd\nfrom fastapi import File\n"
    "from pydantic import BaseModel\n\n\nclass Sale(BaseModel):\n    item: str\n    price: float\n"
    "    qty: int",
    "#| api\ndef sales(table: Annotated[pd.DataFrame, Sale, File()]) -> float:\n"
    "    return float((table.price * table.qty).sum())\n\n\n"
    "def upload(table: Annotated[pd.DataFrame, File()]) -> int:\n    return len(table)",
)


def parquet(frame: pd.DataFrame, **options) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, **options)
    return buffer.getvalue()


def sales_csv(rows: int) -> bytes:
    frame = pd.DataFrame({"item": np.where(np.arange(rows) % 2, "a", "b"),
                          "price": np.full(rows, 1.5), "qty": np.full(rows, 2)})
    return frame.to_csv(index=False).encode()


def test_a_parquet_bomb_is_refused_before_it_is_decoded(make_notebook):
    bomb = parquet(pd.DataFrame({"zero": np.zeros(2_000_000, dtype="int64")}),
                   compression="zstd")
    assert len(bomb) < 200_000  # small on the wire, 16 MB decoded
    with TestClient(create_app(make_notebook(*SALES))) as client:
        response = client.post("/upload", files={"table": ("z.parquet", bomb)})
    assert response.status_code == 413
    assert "1000000 rows" in response.json()["detail"]
    assert "max_upload_rows" in response.json()["detail"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_rows_and_decoded_bytes_are_bounded(make_notebook, fmt):
    def encode(frame: pd.DataFrame) -> tuple[str, bytes]:
        if fmt == "csv":
            return "t.csv", frame.to_csv(index=False).encode()
        return "t.parquet", parquet(frame)

    long = pd.DataFrame({"a": range(250_001)})  # more rows than allowed, over several chunks
    wide = pd.DataFrame({f"c{i}": range(5) for i in range(300)})  # 12,000 bytes > 10 rows' worth
    with TestClient(create_app(make_notebook(*SALES), max_upload_rows=250_000)) as client:
        response = client.post("/upload", files={"table": encode(long)})
        assert response.status_code == 413
        assert "more than 250000 rows" in response.json()["detail"]
        assert client.post("/upload", files={"table": encode(long[:-1])}).json() == 250_000
    with TestClient(create_app(make_notebook(*SALES), max_upload_rows=10)) as client:
        response = client.post("/upload", files={"table": encode(wide)})
        assert response.status_code == 413
        assert "more than 10240 bytes" in response.json()["detail"]


def test_row_errors_name_the_row_in_the_whole_table(make_notebook):
    rows = sales_csv(25_000).split(b"\n")
    bad = b"\n".join(rows[:22_001] + [b"b,cheap,2"] + rows[22_002:])
    with TestClient(create_app(make_notebook(*SALES))) as client:
        assert client.post("/sales", files={"table": ("s.csv", sales_csv(25_000))}).json() \
            == 75_000.0
        response = client.post("/sales", files={"table": ("s.csv", bad)})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "table", 22_000, "price"]


def test_health_checks_answer_during_a_big_validated_upload(make_notebook):
    upload = sales_csv(500_000)
    with serve(make_notebook(*SALES), "--no-access-log") as server:
        result: dict = {}

        def post() -> None:
            with server.client() as client:
                result["r"] = client.post("/sales", files={"table": ("s.csv", upload)})

        caller = threading.Thread(target=post)
        caller.start()
        answers = 0
        # Required: /healthz within 0.5 s throughout; 1 s leaves room for a loaded machine.
        with httpx.Client(base_url=server.base_url, timeout=1.0) as probe:
            while caller.is_alive():
                assert probe.get("/healthz").status_code == 200
                answers += 1
        caller.join()
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json() == 1_500_000.0
        assert answers > 5  # the probes ran while the upload was read
