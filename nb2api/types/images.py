"""Routes that answer with an image, or other bytes of a declared media type, instead of JSON.

A return annotation makes the route answer in its media type: ``matplotlib.figure.Figure``
(rendered to PNG) or bytes marked with any media type, ``Annotated[bytes, "image/png"]``,
``Annotated[bytes, "text/csv"]``, ``Annotated[bytes, "application/pdf"]``. matplotlib is never
imported here: a notebook that annotates with ``Figure`` has imported it already.
"""

from __future__ import annotations

import io
import re
import sys
import typing
from typing import Annotated, Any

from fastapi.datastructures import Default
from fastapi.responses import JSONResponse, Response

PNG = "image/png"
# type/subtype, with optional parameters: "text/csv; charset=utf-8"
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9*][\w.+-]*(\s*;.*)?")


def is_figure(value: Any) -> bool:
    """A matplotlib Figure (or an instance of a subclass), recognised without importing it."""
    return any(
        cls.__name__ == "Figure" and cls.__module__ == "matplotlib.figure"
        for cls in type(value).__mro__
    )


def is_figure_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and any(
        cls.__name__ == "Figure" and cls.__module__ == "matplotlib.figure"
        for cls in annotation.__mro__
    )


def _marked_bytes(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is not Annotated:
        return None
    base, *meta = typing.get_args(annotation)
    if base is not bytes:
        return None
    for item in meta:
        if isinstance(item, str) and _MEDIA_TYPE.fullmatch(item.strip()):
            return item.strip()
    return None


def media_type(annotation: Any) -> str | None:
    """The media type a return annotation declares, or None for a JSON route."""
    if is_figure_type(annotation):
        return PNG
    return _marked_bytes(annotation)


def openapi_responses(annotation: Any) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry that documents a media-type route's 200 answer."""
    kind = media_type(annotation)
    if kind is None:
        return {}
    what = "The image" if kind.startswith("image/") else "The content"
    return {
        200: {
            "description": f"{what} ({kind})",
            "content": {kind: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


def response_class(annotation: Any) -> Any:
    """The route's response class: one with the declared media type, so /docs lists only that."""
    kind = media_type(annotation)
    if kind is None:
        return Default(JSONResponse)
    return type("ImageResponse", (Response,), {"media_type": kind})


def render_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)  # a pyplot figure stays in memory until closed
    return buffer.getvalue()
