"""What only ``nb2api serve`` documents: tables as Arrow and Parquet (an export answers and reads
JSON, and uploaded files, only). The export tests compare documents without it."""

from __future__ import annotations

COLUMNAR = ("application/vnd.apache.arrow.stream", "application/vnd.apache.parquet")
NOT_A_TABLE = "The Accept header takes none of JSON, Arrow and Parquet"  # serve's 406
_TABLE_ANSWER = "The table: JSON records by default"  # how serve describes a table's 200


def without_columnar(operation: dict) -> dict:
    """``operation`` without the Arrow and Parquet media types, their 406 and their wording."""

    def strip(entry: dict) -> dict:
        if "content" not in entry:
            return entry
        content = {k: v for k, v in entry["content"].items() if k not in COLUMNAR}
        if content == entry["content"]:
            return entry
        entry = {**entry, "content": content}
        if entry.get("description", "").startswith(_TABLE_ANSWER):
            entry["description"] = "Successful Response"  # FastAPI's own, in the export
        return entry

    operation = {**operation, "responses": {
        status: strip(answer) for status, answer in operation["responses"].items()
        if answer.get("description") != NOT_A_TABLE}}
    if "requestBody" in operation:
        operation["requestBody"] = strip(operation["requestBody"])
    return operation
