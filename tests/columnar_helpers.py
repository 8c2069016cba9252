"""What only ``nb2api serve`` documents: tables as Arrow and Parquet request bodies (an export
answers tables as serve does, JSON, Arrow or Parquet, but reads JSON and uploaded files only).
The export tests compare documents without them."""

from __future__ import annotations

COLUMNAR = ("application/vnd.apache.arrow.stream", "application/vnd.apache.parquet")


def without_columnar(operation: dict) -> dict:
    """``operation`` without the Arrow and Parquet media types of its request body."""
    if "requestBody" not in operation or "content" not in operation["requestBody"]:
        return operation
    body = operation["requestBody"]
    content = {k: v for k, v in body["content"].items() if k not in COLUMNAR}
    return {**operation, "requestBody": {**body, "content": content}}
