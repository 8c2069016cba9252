"""Files in a request: multipart uploads received as bytes, an UploadFile or a DataFrame.

A parameter annotated ``bytes`` or ``fastapi.UploadFile`` takes the raw file; one annotated
``Annotated[pd.DataFrame, File()]`` (``fastapi.File``) takes a CSV or Parquet file and receives it
read into a DataFrame, validated row by row when a ``Row`` is declared too; an Arrow IPC stream or
file is read too (with the ``arrow`` extra, as Parquet is). A route with a file takes
``multipart/form-data``: its other parameters become form fields. :func:`read_body` reads a whole
request body that is such a table, with the same bounds.
"""

from __future__ import annotations

import inspect
import io
import time
import types
import typing
from typing import Annotated, Any, Literal, NamedTuple

import anyio
from fastapi import File, Form, HTTPException, UploadFile
from fastapi import params as fastapi_params
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile as StarletteUploadFile

from . import columnar, datatypes
from ._lazy import LazyModule, loaded

pd = LazyModule("pandas")

UploadKind = Literal["bytes", "upload", "frame"]

# Reading a large CSV holds the CPU: it runs on threads of its own, off the event loop, and
# never takes a thread that notebook functions or other libraries count on.
_READERS = anyio.CapacityLimiter(2)
_PARQUET_MAGIC = b"PAR1"
# Rows per pydantic call when validating an upload against its Row: between two calls the reading
# thread lets go of the GIL, so the event loop answers health checks during a big upload.
_VALIDATE_ROWS = 10_000
_READ_ROWS = 100_000  # a CSV is read this many rows at a time, counting them against the bound
# A table decodes to at most this many bytes per allowed row (columns of 8-byte values, say).
DECODED_BYTES_PER_ROW = 1024


def upload_kind(annotation: Any) -> UploadKind | None:
    """What a file parameter receives, or None when the parameter is not a file."""
    base, _ = unwrap_optional(annotation)
    meta: tuple[Any, ...] = ()
    if typing.get_origin(base) is Annotated:
        base, *rest = typing.get_args(base)
        meta = tuple(rest)
    if base is bytes:
        return "bytes"
    if isinstance(base, type) and issubclass(base, StarletteUploadFile):
        return "upload"
    frame_type = loaded("pandas", "DataFrame")  # None unless the notebook imported pandas
    if frame_type is not None and base is frame_type and any(
        isinstance(m, fastapi_params.File) for m in meta
    ):
        return "frame"
    return None


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def endpoint_parameters(spec) -> list[inspect.Parameter]:
    """The file and form parameters of an endpoint, as FastAPI reads them."""
    kw = inspect.Parameter.KEYWORD_ONLY
    result = []
    for p in spec.params:
        if p.source not in ("file", "form"):
            continue
        default = inspect.Parameter.empty if p.required else p.default
        if p.source == "form":
            annotation: Any = Annotated[
                datatypes.request_type(p.annotation), Form(description=p.description)
            ]
        else:
            kind = upload_kind(p.annotation)
            description = p.description or (
                "A CSV or Parquet file, read into a table" if kind == "frame" else None
            )
            base: Any = bytes if kind == "bytes" else UploadFile
            if not p.required:
                base = base | None
            annotation = Annotated[base, File(description=description)]
        result.append(inspect.Parameter(p.name, kw, annotation=annotation, default=default))
    return result


class Upload(NamedTuple):
    """A parameter that receives an uploaded table, for :func:`receive` (a ``ParamSpec`` does
    as well): its name and its annotation, ``Annotated[pd.DataFrame, Row, File()]`` say."""

    name: str
    annotation: Any


def frame_params(spec) -> list:
    return [p for p in spec.params if p.source == "file" and upload_kind(p.annotation) == "frame"]


async def receive(frame_specs: list, arguments: dict[str, Any], max_rows: int = 0) -> None:
    """Read each uploaded table in ``arguments`` into a DataFrame, in place, off the event loop;
    ``frame_specs`` name the parameters that take one (:class:`Upload` or ``ParamSpec``).

    ``max_rows`` (0: no bound) bounds each table's rows, and its decoded size to
    ``DECODED_BYTES_PER_ROW`` per allowed row: 413 past either, before the table is decoded
    where the file says its size (Parquet), while it is read otherwise (CSV).
    """
    for p in frame_specs:
        upload = arguments.get(p.name)
        if upload is None:
            continue
        data = await upload.read()
        name, kind = upload.filename or "", upload.content_type or ""
        arguments[p.name] = await anyio.to_thread.run_sync(
            _receive_table, p, data, name, kind, max_rows, limiter=_READERS
        )


def _receive_table(p, data: bytes, filename: str, content_type: str, max_rows: int
                   ) -> pd.DataFrame:
    frame = _read_table(p.name, data, filename, content_type, _Bound(p.name, max_rows))
    return _validate_rows(p, frame)


class _Bound:
    """The most rows and decoded bytes one uploaded table may have."""

    def __init__(self, param: str, max_rows: int) -> None:
        self.param = param
        self.max_rows = max_rows
        self.max_bytes = max_rows * DECODED_BYTES_PER_ROW

    def check(self, rows: int, size: int) -> None:
        if not self.max_rows:
            return
        if rows > self.max_rows:
            raise HTTPException(413, f"the table uploaded as '{self.param}' has more than "
                                f"{self.max_rows} rows, the limit (max_upload_rows)")
        if size > self.max_bytes:
            raise HTTPException(413, f"the table uploaded as '{self.param}' decodes to more than "
                                f"{self.max_bytes} bytes, the limit ({DECODED_BYTES_PER_ROW} "
                                "bytes per row of max_upload_rows)")


def _read_table(param: str, data: bytes, filename: str, content_type: str, bound: _Bound
                ) -> pd.DataFrame:
    what = _table_format(data, filename, content_type)
    try:
        if what == "CSV":
            return _read_csv(data, bound)
        if not columnar.available():
            raise HTTPException(415, f"{what} uploads need pyarrow: pip install 'nb2api[arrow]'")
        media_type = columnar.PARQUET if what == "Parquet" else columnar.ARROW
        return columnar.read(data, media_type, bound.check)
    except HTTPException:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, columnar.ColumnarError):  # which says what it could not read
            text = f"not a readable {what} file: {text}"
        raise RequestValidationError(
            [
                {
                    "type": "file_format",
                    "loc": ("body", param),
                    "msg": text,
                    "input": filename,
                }
            ]
        ) from None


def _table_format(data: bytes, filename: str, content_type: str) -> str:
    """"Parquet", "Arrow" (an IPC stream or file, Feather v2) or "CSV", by magic bytes, name
    or content type."""
    name = filename.lower()
    if data[:4] == _PARQUET_MAGIC or name.endswith((".parquet", ".pq")) \
            or "parquet" in content_type:
        return "Parquet"
    if data[:6] == b"ARROW1" or data[:4] == b"\xff\xff\xff\xff" \
            or name.endswith((".arrow", ".arrows", ".feather")) or "apache.arrow" in content_type:
        return "Arrow"
    return "CSV"


def read_body(p, data: bytes, media_type: str, max_rows: int = 0) -> pd.DataFrame:
    """A whole request body that is an Arrow IPC stream or a Parquet file (``media_type``),
    as the DataFrame parameter ``p`` (:class:`Upload` or ``ParamSpec``) receives it: bounded by
    ``max_rows`` as an upload is, validated against its ``Row`` when it declares one."""
    if not columnar.available():
        raise HTTPException(415, columnar.NEEDS_EXTRA)
    try:
        frame = columnar.read(data, media_type, _Bound(p.name, max_rows).check)
    except columnar.ColumnarError as exc:
        raise RequestValidationError([{"type": "file_format", "loc": ("body",), "msg": str(exc),
                                       "input": media_type}]) from None
    return _validate_rows(p, frame)


def _read_csv(data: bytes, bound: _Bound) -> pd.DataFrame:
    chunks, rows, size = [], 0, 0
    with pd.read_csv(io.BytesIO(data), chunksize=_READ_ROWS) as reader:
        for chunk in reader:
            rows += len(chunk)
            size += int(chunk.memory_usage(index=False).sum())
            bound.check(rows, size)
            chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return pd.concat(chunks, ignore_index=True)


def _validate_rows(p, frame: pd.DataFrame) -> pd.DataFrame:
    table, _ = unwrap_optional(p.annotation)
    schema = datatypes.data_schema(datatypes.request_type(table))
    if schema is None or getattr(schema, "row", None) is None:
        return frame
    adapter = _adapter(schema)
    parts = []
    for start in range(0, max(len(frame), 1), _VALIDATE_ROWS):
        part = frame.iloc[start : start + _VALIDATE_ROWS]
        records = part.astype(object).where(part.notna(), None).to_dict("records")
        try:
            parts.append(adapter.validate_python(records))
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("body", p.name, *_offset(error["loc"], start))}
                for error in exc.errors(include_url=False)
            ]
            raise RequestValidationError(errors) from None
        time.sleep(0)  # let the event loop have the GIL between chunks
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, ignore_index=True)


def _offset(loc: tuple, start: int) -> tuple:
    """A row error's location in the whole table, from its location in one chunk."""
    if loc and isinstance(loc[0], int):
        return (loc[0] + start, *loc[1:])
    return loc


def _adapter(schema: datatypes.DataSchema) -> TypeAdapter:
    cached = getattr(schema, "_upload_adapter", None)
    if cached is None:
        cached = TypeAdapter(Annotated[pd.DataFrame, schema])
        schema._upload_adapter = cached  # type: ignore[attr-defined]
    return cached
