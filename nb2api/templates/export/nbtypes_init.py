"""nb2api's data-science types for the exported app: DataFrames, Series, arrays, uploads, images.

The modules in this folder are nb2api {version}'s own (frames, datatypes, encoding, images,
uploads), copied verbatim by `nb2api export`, so that this app validates, documents and encodes
these types exactly as `nb2api serve` does, without nb2api installed. app.py uses only the names
below. Do not edit the copies: export the notebook again to update them.
"""

from typing import Any, NamedTuple

from .datatypes import request_type, response_type
from .encoding import ResultError, dumps, encode_after, make_encoder
from .images import openapi_responses as image_responses
from .images import response_class
from .uploads import receive

__all__ = [
    "ResultError",
    "Upload",
    "dumps",
    "encode_after",
    "image_responses",
    "make_encoder",
    "receive",
    "request_type",
    "response_class",
    "response_type",
]


class Upload(NamedTuple):
    """A route parameter that receives an uploaded CSV or Parquet file as a DataFrame."""

    name: str
    annotation: Any  # as the notebook wrote it, e.g. Annotated[pd.DataFrame, Row, File()]
