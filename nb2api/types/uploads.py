"""Files in a request: multipart uploads received as bytes, an UploadFile or a DataFrame.

A parameter annotated ``bytes`` or ``fastapi.UploadFile`` takes the raw file; one annotated
``Annotated[pd.DataFrame, File()]`` (``fastapi.File``) takes a CSV or Parquet file and receives it
read into a DataFrame, validated row by row when a ``Row`` is declared too. A route with a file
takes ``multipart/form-data``: its other parameters become form fields.
"""

from __future__ import annotations

import inspect
import io
import types
import typing
from typing import Annotated, Any, Literal, NamedTuple

import anyio
from fastapi import File, Form, HTTPException, UploadFile
from fastapi import params as fastapi_params
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile as StarletteUploadFile

from . import datatypes
from ._lazy import LazyModule, loaded

pd = LazyModule("pandas")

UploadKind = Literal["bytes", "upload", "frame"]

# Reading a large CSV holds the CPU: it runs on threads of its own, off the event loop, and
# never takes a thread that notebook functions or other libraries count on.
_READERS = anyio.CapacityLimiter(2)
_PARQUET_MAGIC = b"PAR1"


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


async def receive(frame_specs: list, arguments: dict[str, Any]) -> None:
    """Read each uploaded table in ``arguments`` into a DataFrame, in place; ``frame_specs``
    name the parameters that take one (:class:`Upload` or ``ParamSpec``)."""
    for p in frame_specs:
        upload = arguments.get(p.name)
        if upload is None:
            continue
        data = await upload.read()
        name, kind = upload.filename or "", upload.content_type or ""
        frame = await anyio.to_thread.run_sync(_read_table, p.name, data, name, kind,
                                               limiter=_READERS)
        arguments[p.name] = _validate_rows(p, frame)


def _read_table(param: str, data: bytes, filename: str, content_type: str) -> pd.DataFrame:
    parquet = (
        data[:4] == _PARQUET_MAGIC
        or filename.lower().endswith((".parquet", ".pq"))
        or "parquet" in content_type
    )
    try:
        if parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise HTTPException(
                    415, "Parquet uploads need pyarrow: pip install 'nb2api[parquet]'"
                ) from None
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except HTTPException:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file
        what = "Parquet" if parquet else "CSV"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RequestValidationError(
            [
                {
                    "type": "file_format",
                    "loc": ("body", param),
                    "msg": f"not a readable {what} file: {text}",
                    "input": filename,
                }
            ]
        ) from None


def _validate_rows(p, frame: pd.DataFrame) -> pd.DataFrame:
    table, _ = unwrap_optional(p.annotation)
    schema = datatypes.data_schema(datatypes.request_type(table))
    if schema is None or getattr(schema, "row", None) is None:
        return frame
    adapter = _adapter(schema)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    try:
        return adapter.validate_python(records)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", p.name, *error["loc"])}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


def _adapter(schema: datatypes.DataSchema) -> TypeAdapter:
    cached = getattr(schema, "_upload_adapter", None)
    if cached is None:
        cached = TypeAdapter(Annotated[pd.DataFrame, schema])
        schema._upload_adapter = cached  # type: ignore[attr-defined]
    return cached
