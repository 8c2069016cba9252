"""Results that are not JSON, answered the way Jupyter displays them.

A notebook shows a value through IPython's display protocol: ``_repr_mimebundle_`` and the
``_repr_<format>_`` methods (a statsmodels ``Summary`` has ``_repr_html_``, an altair chart a
Vega-Lite bundle), ``repr()`` as text/plain last, and a matplotlib figure as PNG. A route whose
result JSON cannot write answers with one of those representations, the one the request's
``Accept`` header prefers; without a preference (no header, ``*/*``), the first available in
:data:`PREFERENCE`. A ``fastapi.Response`` result is passed through as it is.

Nothing here runs for a result that is JSON: the endpoint comes here only after encoding failed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from . import images
from .accept import accepted, quality

# Jupyter's own order (JupyterLab ranks html, markdown, latex, svg, png, jpeg ... above plain
# text), with JSON first because the client is a program: application/json, then any other JSON
# (``application/vnd.vegalite.v5+json``), then the rest; a media type not listed comes before
# text/plain, which is always last.
PREFERENCE = (
    "application/json",
    "text/html",
    "text/markdown",
    "text/latex",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "application/pdf",
    "application/javascript",
)
PLAIN = "text/plain"

# The methods IPython's formatters call, by the media type each gives.
REPR_METHODS = {
    "application/json": "_repr_json_",
    "text/html": "_repr_html_",
    "text/markdown": "_repr_markdown_",
    "text/latex": "_repr_latex_",
    "image/svg+xml": "_repr_svg_",
    "image/png": "_repr_png_",
    "image/jpeg": "_repr_jpeg_",
    "application/pdf": "_repr_pdf_",
    "application/javascript": "_repr_javascript_",
}
_BINARY = ("image/png", "image/jpeg", "image/gif", "application/pdf")

Representation = Callable[[], Any]  # the data of one media type, or None when it has none
Dumps = Callable[[Any], bytes]


def is_shown_type(annotation: Any) -> bool:
    """A return annotation answered through the display protocol rather than a JSON schema:
    a ``Response`` class, or a plain class with a display method (not a model or dataclass,
    which have a schema)."""
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, Response):
        return True
    if issubclass(annotation, BaseModel) or hasattr(annotation, "__dataclass_fields__"):
        return False
    return any(
        callable(getattr(annotation, name, None))
        for name in ("_repr_mimebundle_", *REPR_METHODS.values())
    )


def shown_media_types(annotation: Any) -> list[str]:
    """The media types a route annotated ``-> annotation`` can answer with, best first: those
    of the class's display methods (``*/*`` for a ``_repr_mimebundle_``, whose keys are known
    only when it runs), or a ``Response`` class's own (``*/*`` when it sets none)."""
    if not is_shown_type(annotation):
        return []
    if issubclass(annotation, Response):
        return [annotation.media_type or "*/*"]
    found = [kind for kind, name in REPR_METHODS.items() if callable(getattr(annotation, name,
                                                                                None))]
    if callable(getattr(annotation, "_repr_mimebundle_", None)):
        found.append("*/*")
    if annotation.__repr__ is not object.__repr__:
        found.append(PLAIN)
    return sorted(found, key=_rank)


def shown_responses(annotation: Any) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of a route annotated with a ``Response`` class or a class
    Jupyter displays: the media types it can answer with (and the 406 of a refused Accept)."""
    kinds = shown_media_types(annotation)
    if not kinds:
        return {}
    content = {kind: {"schema": _schema(kind)} for kind in kinds}
    if issubclass(annotation, Response):
        return {200: {"description": "The response the function returns", "content": content}}
    return {
        200: {"description": f"The {annotation.__name__}, as Jupyter displays it: the media "
                             "type the Accept header prefers", "content": content},
        406: {"description": "Not Acceptable: the Accept header refuses every representation"},
    }


def _schema(media_type: str) -> dict[str, Any]:
    if media_type == "application/json" or media_type.endswith("+json") or media_type == "*/*":
        return {}
    if media_type in _BINARY:
        return {"type": "string", "format": "binary"}
    return {"type": "string"}


def response(value: Any, dumps: Dumps) -> Response | None:
    """The answer for a result JSON cannot write: ``value`` itself when it is a Response, else
    a response that shows it as Jupyter would; None when nothing can show it."""
    if isinstance(value, Response):
        return value
    found = representations(value)
    return DisplayResponse(found, dumps) if found else None


def representations(value: Any) -> dict[str, Representation]:
    """Media type -> a function giving ``value``'s data in it, in :data:`PREFERENCE` order."""
    found: dict[str, Representation] = {}
    if images.is_figure(value):  # as %matplotlib inline shows it
        found[images.PNG] = lambda: images.render_png(value)
    kind = type(value)
    bundle_method = getattr(kind, "_repr_mimebundle_", None)
    if callable(bundle_method):
        bundle = _data(value._repr_mimebundle_(include=None, exclude=None))  # as IPython calls it
        if isinstance(bundle, dict):
            for media_type, data in bundle.items():
                found.setdefault(media_type, lambda data=data: _data(data))
    for media_type, name in REPR_METHODS.items():
        if media_type not in found and callable(getattr(kind, name, None)):
            found[media_type] = lambda name=name: _data(getattr(value, name)())
    if PLAIN not in found and kind.__repr__ is not object.__repr__:
        found[PLAIN] = lambda: repr(value)
    return dict(sorted(found.items(), key=lambda item: _rank(item[0])))


def _data(returned: Any) -> Any:
    """A ``_repr_*_`` method may return ``(data, metadata)``; the data is what is sent."""
    if isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[1], dict):
        return returned[0]
    return returned


def _rank(media_type: str) -> tuple[int, int]:
    if media_type == PLAIN:
        return 3, 0
    if media_type in PREFERENCE:
        return (0 if media_type == "application/json" else 2), PREFERENCE.index(media_type)
    if media_type.endswith("+json"):
        return 1, 0
    return 2, len(PREFERENCE)


def acceptable(accept: str | None, available: list[str]) -> list[str]:
    """``available`` media types the ``Accept`` header takes, best first: by q-value, then in
    the order given (the server's preference). A media type with q=0 is left out."""
    ranges = accepted(accept)
    if not ranges:
        return list(available)
    scored = []
    for position, media_type in enumerate(available):
        q = quality(media_type.lower(), ranges)[0]
        if q > 0:
            scored.append((-q, position, media_type))
    return [media_type for _, _, media_type in sorted(scored)]


def body(media_type: str, data: Any, dumps: Dumps) -> bytes:
    """The bytes of one representation: JSON written by ``dumps``, text as UTF-8, binary data
    as is (or decoded from the base64 text a mimebundle may hold)."""
    if media_type == "application/json" or media_type.endswith("+json"):
        return dumps(data)
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    text = str(data)
    if media_type in _BINARY:
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    return text.encode("utf-8")


class DisplayResponse(Response):
    """Shows a result in the media type the request accepts, chosen when it is sent."""

    def __init__(self, found: dict[str, Representation], dumps: Dumps) -> None:
        super().__init__(status_code=200)
        self.found = found
        self.dumps = dumps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = None
        for key, value in scope.get("headers", ()):
            if key == b"accept":
                accept = value.decode("latin-1")
                break
        chosen: Response | None = None
        for media_type in acceptable(accept, list(self.found)):
            data = self.found[media_type]()
            if data is not None:  # a _repr_*_ method may decline
                chosen = Response(
                    body(media_type, data, self.dumps),
                    media_type=media_type,
                    headers={"Vary": "Accept"},
                    background=self.background,
                )
                break
        if chosen is None:
            offered = ", ".join(self.found)
            chosen = JSONResponse(
                {"detail": f"Not Acceptable: this result is available as {offered}"},
                status_code=406,
                headers={"Vary": "Accept"},
            )
        await chosen(scope, receive, send)
