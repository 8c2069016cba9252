"""The data-science types: DataFrames, Series, arrays, numpy scalars, uploads and images.

How each becomes a pydantic type (``datatypes``), how values are converted column by column
(``frames``, with ``records`` joining rows in Arrow, ``keyed`` without pyarrow), how results are
written as JSON or image bytes (``encoding``, ``images``), tables as Arrow or Parquet, both ways,
as ``Accept`` asks (``columnar``, ``arrowframe``, ``answers``), how uploaded files are read
(``uploads``) and what a route answers when its function fails (``errors``).

This package imports nothing else from nb2api, only its own modules (relatively) and third-party
packages: ``nb2api export`` copies it, byte for byte, into the exported project, so the exported
app runs the very code that ``nb2api serve`` runs.
"""

from __future__ import annotations

from . import answers  # exported endpoints: tables as JSON, Arrow or Parquet
from .datatypes import (
    ADVICE,
    data_schema,
    nullable_floats,
    openapi_responses,
    request_type,
    response_class,
    response_type,
)
from .documents import document_answered_floats
from .encoding import Encoder, ResultError, dumps, encode_after, make_encoder
from .errors import (
    ErrorBody,
    body_error_responses,
    error_response,
    error_responses,
    exception_handlers,
    respond,
    validation_error,
)
from .images import is_figure, media_type
from .uploads import Upload, endpoint_parameters, frame_params, receive, upload_kind

__all__ = [
    "ADVICE",
    "Encoder",
    "ErrorBody",
    "ResultError",
    "Upload",
    "answers",
    "body_error_responses",
    "data_schema",
    "document_answered_floats",
    "dumps",
    "encode_after",
    "endpoint_parameters",
    "error_response",
    "error_responses",
    "exception_handlers",
    "frame_params",
    "is_figure",
    "make_encoder",
    "media_type",
    "nullable_floats",
    "openapi_responses",
    "receive",
    "request_type",
    "respond",
    "response_class",
    "response_type",
    "upload_kind",
    "validation_error",
]
