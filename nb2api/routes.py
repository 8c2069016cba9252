"""Turn each notebook function's signature and docstring into a route spec.

Third stage of the pipeline: :class:`NotebookFunction` -> :class:`RouteSpec`, plain data plus the
pydantic models that validate requests and describe responses. Every rule about signatures is
checked here, at load time, so a request never meets a function nb2api cannot call.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import re
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import docstring_parser
from fastapi import params as fastapi_params
from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo

from .errors import (
    AnnotationError,
    ReservedPathError,
    RouteConflictError,
    SignatureError,
    UndefinedNameError,
)
from .load import LoadedNotebook, NotebookFunction, parse_batch, parse_job, parse_route
from .types import datatypes, uploads
from .types._lazy import loaded

# form and file: multipart (or a urlencoded form); header and cookie: only by a FastAPI marker
ParamSource = Literal["path", "query", "header", "cookie", "body", "form", "file"]
_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")
_QUERY_METHODS = ("GET", "DELETE")
# The paths nb2api answers itself, each with everything below it: a notebook route may take none.
RESERVED_PATHS = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/jobs",
    "/mcp",
    "/_nb2api",
)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    annotation: Any  # the resolved annotation, ``Any`` when there was none
    annotated: bool
    required: bool
    default: Any
    description: str | None
    source: ParamSource
    positional_only: bool = False
    # A FastAPI marker in the annotation (``Annotated[str, Header()]``), which decided ``source``
    # and is handed to FastAPI as is (alias, convert_underscores, ...); ``annotation`` is then
    # the annotation without it.
    marker: fastapi_params.Param | fastapi_params.Form | None = None


@dataclass(frozen=True)
class RouteOptions:
    timeout: float | None = None
    max_concurrency: int | None = None
    executor: Literal["thread", "process"] = "thread"
    job: bool = False  # '#| job': every call is a job (202), never answered in the request
    retries: int = 0  # '#| job: retries=N': runs again after a restart interrupted it


BatchKind = Literal["list", "frame", "array"]


@dataclass(frozen=True)
class BatchSpec:
    """``#| batch``: concurrent requests merged into one call of the function."""

    max_size: int  # items (list elements, rows, first-axis entries) per call at most
    max_wait: float  # seconds the first request of a batch waits for others
    batched: tuple[tuple[str, BatchKind], ...]  # parameters merged along their first axis
    grouped: tuple[str, ...]  # parameters whose values must be equal to share a batch

    def describe(self) -> str:
        text = (f"batch: max_size={self.max_size}, max_wait_ms={self.max_wait * 1000:g}; "
                f"merges {', '.join(name for name, _ in self.batched)}")
        return text + (f"; groups by {', '.join(self.grouped)}" if self.grouped else "")


@dataclass(frozen=True)
class RouteSpec:
    """Everything ``app`` needs to mount one notebook function."""

    name: str
    method: str
    path: str
    func: Callable[..., Any]
    is_async: bool
    params: tuple[ParamSpec, ...]
    returns: Any  # the return annotation, ``inspect.Parameter.empty`` when there is none
    summary: str | None
    description: str | None
    body_model: type[BaseModel] | None
    query_model: type[BaseModel] | None
    response_model: Any
    function: NotebookFunction
    options: RouteOptions = field(default_factory=RouteOptions)
    warnings: tuple[str, ...] = ()
    batch: BatchSpec | None = None
    # A generator function streams its items; ``returns`` (and ``item``) is then T of its
    # ``Iterator[T]`` annotation: what each item is encoded and documented as.
    streams: bool = False
    item: Any = inspect.Parameter.empty

    def signature(self) -> str:
        parts = []
        for p in self.params:
            text = p.name
            if p.annotated:
                text += f": {type_name(p.annotation)}"
            if not p.required:
                text += f" = {p.default!r}"
            parts.append(text)
        result = ""
        if self.returns is not inspect.Parameter.empty:
            result = f" -> {type_name(self.returns)}"
            if self.streams:
                result = f" -> Iterator[{type_name(self.returns)}]"
        prefix = "async " if self.is_async else ""
        return f"{prefix}{self.name}({', '.join(parts)}){result}"


def build_routes(loaded: LoadedNotebook) -> list[RouteSpec]:
    """Route specs for every function of a loaded notebook, in notebook order."""
    specs = [build_route(f, loaded) for f in loaded.functions]
    for spec in specs:
        _check_not_reserved(spec, str(loaded.notebook.path))
    seen: dict[tuple[str, str], RouteSpec] = {}
    for spec in specs:
        key = (spec.method, _path_shape(spec.path))
        if key in seen:
            other = seen[key]
            raise RouteConflictError(
                f"{spec.name}() and {other.name}() (in {other.function.cell.ref}) are both on "
                f"{spec.method} {spec.path}; give one of them another '#| route:'",
                path=str(loaded.notebook.path),
                cell=spec.function.cell.ref,
                line=spec.function.line,
                function=spec.name,
            )
        seen[key] = spec
    _name_models_uniquely(specs)
    return specs


def is_reserved(path: str) -> bool:
    """True for a path nb2api serves itself: one of RESERVED_PATHS or a path below one."""
    path = path.rstrip("/") or "/"
    return any(path == reserved or path.startswith(reserved + "/") for reserved in RESERVED_PATHS)


def _check_not_reserved(spec: RouteSpec, notebook_path: str) -> None:
    if is_reserved(spec.path):
        raise ReservedPathError(
            f"{spec.name}() is routed to {spec.method} {spec.path}, a path nb2api serves itself "
            f"({', '.join(RESERVED_PATHS)} and the paths below them are reserved); give it "
            "another '#| route:'",
            path=notebook_path,
            cell=spec.function.cell.ref,
            line=spec.function.line,
            function=spec.name,
        )


def build_route(function: NotebookFunction, loaded: LoadedNotebook) -> RouteSpec:
    notebook_path = str(loaded.notebook.path)

    def fail(kind: type[SignatureError], reason: str, parameter: str | None = None):
        return kind(
            reason,
            path=notebook_path,
            cell=function.cell.ref,
            line=function.line,
            function=function.name,
            parameter=parameter,
        )

    func = function.func
    name = function.name
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise fail(SignatureError, f"{name}() has no readable signature: {exc}") from None
    hints = _resolve_hints(func, name, fail)
    method, path = "POST", f"/{name}"
    if "route" in function.options:
        method, path = parse_route(function.options["route"])
    options = _route_options(function, fail)
    if options.executor == "process" and inspect.iscoroutinefunction(func):
        raise fail(
            SignatureError,
            f"'#| executor: process' needs a plain 'def' function; {name}() is 'async def', "
            "which runs on the event loop",
        )
    path_names = _PATH_PARAM.findall(path)

    docs = docstring_parser.parse(inspect.getdoc(func) or "")
    param_docs = {p.arg_name: p.description for p in docs.params}

    params: list[ParamSpec] = []
    route_warnings: list[str] = []
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise fail(
                SignatureError,
                f"{name}() must not have *{p.name}: a route takes named parameters only",
                p.name,
            )
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            raise fail(
                SignatureError,
                f"{name}() must not have **{p.name}: a route takes named parameters only",
                p.name,
            )
        if p.name.startswith("_"):
            raise fail(
                SignatureError,
                f"{name}() parameter '{p.name}' starts with '_': request fields cannot; rename it",
                p.name,
            )
        annotated = p.name in hints
        annotation = hints.get(p.name, Any)
        if not annotated:
            route_warnings.append(
                f"{notebook_path}, {function.cell.ref}: {name}() parameter '{p.name}' has no "
                "annotation; it accepts any JSON value"
            )
        marker, annotation = _fastapi_marker(annotation)
        source = _source(p.name, marker, path_names, method, fail)
        params.append(
            ParamSpec(
                name=p.name,
                annotation=annotation,
                annotated=annotated,
                required=p.default is inspect.Parameter.empty,
                default=p.default,
                description=param_docs.get(p.name),
                source=source,
                positional_only=p.kind is inspect.Parameter.POSITIONAL_ONLY,
                marker=marker,
            )
        )
    names = {p.name for p in params}
    for missing in [n for n in path_names if n not in names]:
        raise fail(
            SignatureError,
            f"the route {method} {path} has '{{{missing}}}' but {name}() has no parameter "
            f"'{missing}'",
            missing,
        )
    params = _with_form_sources(params, method, fail)
    for p in params:
        if p.source not in ("body", "file"):
            _check_scalar_param(p, method, fail)

    stem = _pascal(name)
    body_params = [p for p in params if p.source == "body"]
    query_params = [p for p in params if p.source == "query" and p.marker is None]
    body_model = _model(f"{stem}Request", body_params, name, fail) if body_params else None
    query_model = _model(f"{stem}Query", query_params, name, fail) if query_params else None
    returns = hints.get("return", inspect.Parameter.empty)
    streams = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
    item = _stream_item(returns) if streams else inspect.Parameter.empty
    if streams and options.executor == "process":
        raise fail(
            SignatureError,
            f"{name}() is a generator, which streams from a worker thread or the event loop; "
            "'#| executor: process' cannot stream it: drop the directive",
        )
    if streams:
        returns = item
    response_model = _response_model(
        f"{stem}Item" if streams else f"{stem}Response", returns, name, fail
    )

    batch = _batch_spec(function, params, returns, fail) if "batch" in function.options else None
    description = "\n\n".join(
        part for part in (function.cell.description, docs.long_description) if part
    )
    return RouteSpec(
        name=name,
        method=method,
        path=path,
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        params=tuple(params),
        returns=returns,
        summary=docs.short_description,
        description=description or None,
        body_model=body_model,
        query_model=query_model,
        response_model=response_model,
        function=function,
        options=options,
        warnings=tuple(route_warnings),
        batch=batch,
        streams=streams,
        item=item,
    )


_STREAM_ORIGINS = (
    collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
    collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator,
)


def _stream_item(returns: Any) -> Any:
    """``T`` of a generator's ``Iterator[T]`` (or ``Generator[T, ...]``, ``AsyncIterator[T]``);
    ``inspect.Parameter.empty`` when the annotation does not say."""
    if typing.get_origin(returns) in _STREAM_ORIGINS and typing.get_args(returns):
        return typing.get_args(returns)[0]
    return inspect.Parameter.empty


def type_name(annotation: Any) -> str:
    if annotation is Any:
        return "Any"
    if typing.get_origin(annotation) is typing.Annotated:
        # Constraints (Field(...)) are noise in a signature; a Row class is the point of one.
        base, *metadata = typing.get_args(annotation)
        rows = [m for m in metadata if isinstance(m, type)]
        return type_name(base) + (f"[{rows[0].__qualname__}]" if rows else "")
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    text = repr(annotation)
    return re.sub(r"\b(typing|typing_extensions|builtins|nb2api_notebook_\d+)\.", "", text)


def _resolve_hints(func, name, fail) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except NameError:
        pass
    except Exception as exc:  # a broken forward reference can raise nearly anything
        raise fail(SignatureError, f"cannot resolve the annotations of {name}(): {exc}") from None
    # Find which annotation names the undefined thing, to say so.
    for param, annotation in getattr(func, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            continue
        try:
            eval(annotation, getattr(func, "__globals__", {}))
        except NameError as exc:
            where = "the return annotation" if param == "return" else f"parameter '{param}'"
            raise fail(
                UndefinedNameError,
                f"{exc} (in {where} of {name}()); define or import it in a setup or api cell",
                None if param == "return" else param,
            ) from None
    raise fail(UndefinedNameError, f"an annotation of {name}() names something not defined")


def _fastapi_marker(annotation: Any) -> tuple[Any, Any]:
    """The FastAPI marker (``Header()``, ``Cookie()``, ``Query()``, ``Path()``, ``Form()``) in an
    ``Annotated`` annotation, and the annotation without it; ``(None, annotation)`` without one.

    ``Body()`` stays in the annotation: a body field is one field of the request model, which
    reads its constraints as pydantic's ``Field``. ``File()`` stays too: uploads read it.
    """
    if typing.get_origin(annotation) is not typing.Annotated:
        return None, annotation
    base, *metadata = typing.get_args(annotation)
    markers = [
        m for m in metadata
        if isinstance(m, fastapi_params.Param)
        or (isinstance(m, fastapi_params.Form) and not isinstance(m, fastapi_params.File))
    ]
    if not markers:
        return None, annotation
    rest = [m for m in metadata if m is not markers[-1]]
    return markers[-1], typing.Annotated[(base, *rest)] if rest else base


def _source(name: str, marker: Any, path_names: list[str], method: str, fail) -> ParamSource:
    """Where a parameter comes from: its FastAPI marker, else the path, else the method."""
    if marker is None:
        if name in path_names:
            return "path"
        return "query" if method in _QUERY_METHODS else "body"
    source: ParamSource = (
        "form" if isinstance(marker, fastapi_params.Form) else marker.in_.value  # type: ignore[assignment]
    )
    if (source == "path") != (name in path_names):
        marked = type(marker).__name__
        raise fail(
            SignatureError,
            f"parameter '{name}' is marked {marked}() but the route {method} has "
            + (f"no '{{{name}}}' in its path" if source == "path" else f"'{{{name}}}' in its path")
            + "; a path parameter is named in '#| route:' and needs no marker",
            name,
        )
    return source


def _with_form_sources(params: list[ParamSpec], method: str, fail) -> list[ParamSpec]:
    """For a route that takes a file or a ``Form()`` field: file parameters come from ``file``,
    the other body parameters from ``form``."""
    files = [p for p in params if uploads.upload_kind(p.annotation) is not None]
    if not files and not any(p.source == "form" for p in params):
        return params
    for p in files:
        if p.source != "body":
            where = "the path" if p.source == "path" else f"the query string of a {method} route"
            raise fail(
                SignatureError,
                f"parameter '{p.name}' is a file but comes from {where}; files are uploaded in "
                "the body: use a POST route",
                p.name,
            )
    return [
        dataclasses.replace(p, source="file" if p in files else "form")
        if p.source == "body"
        else p
        for p in params
    ]


def _check_scalar_param(param: ParamSpec, method: str, fail) -> None:
    """Path, query and form parameters arrive as text: only scalars (and lists of them) fit."""
    annotation = param.annotation
    lists = param.source in ("query", "header", "form")
    if datatypes.is_scalar(annotation) or (lists and datatypes.is_scalar_list(annotation)):
        return
    where = {
        "path": "the path",
        "query": f"the query string of a {method} route",
        "header": "a request header",
        "cookie": "a cookie",
        "form": "a form field (the route takes a file or a Form() field, so its body is a form)",
    }[param.source]
    fix = (
        "take the file in a route of its own, or send this value inside the file"
        if param.source == "form"
        else "take it in the query string or the body"
        if param.source in ("header", "cookie")
        else "use a POST route to take it in a JSON body"
    )
    raise fail(
        AnnotationError,
        f"parameter '{param.name}: {type_name(annotation)}' comes from {where}, which holds only "
        "plain values (str, int, float, bool, date, UUID, Enum, Literal"
        + (", or a list of them" if lists else "")
        + f"); {fix}",
        param.name,
    )


def _route_options(function: NotebookFunction, fail) -> RouteOptions:
    opts = function.options
    kwargs: dict[str, Any] = {}
    try:
        if "timeout" in opts:
            kwargs["timeout"] = float(opts["timeout"])
            if kwargs["timeout"] <= 0:
                raise ValueError
    except ValueError:
        raise fail(SignatureError, f"'#| timeout: {opts['timeout']}' must be seconds > 0") from None
    try:
        if "max-concurrency" in opts:
            kwargs["max_concurrency"] = int(opts["max-concurrency"])
            if kwargs["max_concurrency"] < 1:
                raise ValueError
    except ValueError:
        raise fail(
            SignatureError,
            f"'#| max-concurrency: {opts['max-concurrency']}' must be a whole number >= 1",
        ) from None
    if "executor" in opts:
        if opts["executor"] not in ("thread", "process"):
            raise fail(
                SignatureError, f"'#| executor: {opts['executor']}' must be 'thread' or 'process'"
            )
        kwargs["executor"] = opts["executor"]
    if "job" in opts:
        kwargs["job"] = True
        kwargs["retries"] = parse_job(opts["job"])
    return RouteOptions(**kwargs)


def _batch_spec(function: NotebookFunction, params: list[ParamSpec], returns: Any,
                fail) -> BatchSpec:
    """``#| batch`` on a function it can merge calls of: a list, DataFrame or ndarray parameter,
    plain values beside it, and a result with one item per input item."""
    name = function.name
    value = function.options["batch"]
    directive = f"'#| batch: {value}'" if value else "'#| batch'"
    if inspect.iscoroutinefunction(function.func):
        raise fail(SignatureError, f"{directive} needs a plain 'def' function, which runs on "
                                   f"a worker; {name}() is 'async def'")
    batched = tuple((p.name, kind) for p in params if p.source in ("body", "query")
                    and (kind := _batch_kind(p.annotation)) in ("list", "frame", "array"))
    if not batched:
        raise fail(SignatureError, f"{directive} needs a parameter to merge: list[T], "
                                   f"pd.DataFrame (rows) or np.ndarray (first axis); {name}() "
                                   "has none")
    merged = {n for n, _ in batched}
    for p in params:
        if p.name not in merged and not datatypes.is_scalar(p.annotation):
            raise fail(SignatureError, f"{directive}: parameter '{p.name}: "
                                       f"{type_name(p.annotation)}' is neither merged (list[T], "
                                       "pd.DataFrame, np.ndarray) nor a plain value (str, int, "
                                       "float, bool, ...) that requests must share to be merged",
                       p.name)
    if returns is not inspect.Parameter.empty and _batch_kind(returns) is None:
        raise fail(SignatureError, f"{directive} needs a result with one item per input item "
                                   f"(a list, DataFrame, Series or np.ndarray); {name}() returns "
                                   f"{type_name(returns)}")
    max_size, max_wait_ms = parse_batch(function.options["batch"])
    return BatchSpec(max_size, max_wait_ms / 1000, batched,
                     tuple(p.name for p in params if p.name not in merged))


def _batch_kind(annotation: Any) -> BatchKind | Literal["series"] | None:
    """What ``#| batch`` can split ``annotation``'s values along; None if nothing."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is list or typing.get_origin(annotation) is list:
        return "list"
    if annotation is not None and annotation is loaded("pandas", "DataFrame"):
        return "frame"
    if annotation is not None and annotation is loaded("pandas", "Series"):
        return "series"
    ndarray = loaded("numpy", "ndarray")
    if ndarray is not None and (annotation is ndarray or typing.get_origin(annotation) is ndarray):
        return "array"
    return None


_MODEL_CONFIG = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=False)


def _field(p: ParamSpec) -> tuple[Any, FieldInfo]:
    annotation = datatypes.request_type(p.annotation)
    default = ... if p.required else p.default
    # Only a docstring's description is passed: description=None would wipe the one given in
    # ``Annotated[..., Field(description=...)]``.
    extra = {"description": p.description} if p.description else {}
    return annotation, Field(default, **extra)


def _model(model_name: str, params: list[ParamSpec], func_name: str, fail) -> type[BaseModel]:
    fields = {p.name: _field(p) for p in params}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # field names that shadow BaseModel attributes
            model = create_model(  # type: ignore[call-overload]
                model_name, __config__=_MODEL_CONFIG, __module__=__name__, **fields
            )
        model.model_json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        param = _failing_param(params)
        annotation = type_name(param.annotation) if param else "?"
        raise fail(
            AnnotationError,
            f"{func_name}() parameter '{param.name if param else '?'}: {annotation}' cannot "
            f"become a JSON schema ({_short(exc)}); {datatypes.ADVICE}",
            param.name if param else None,
        ) from None
    return model


def _failing_param(params: list[ParamSpec]) -> ParamSpec | None:
    for p in params:
        try:
            TypeAdapter(datatypes.request_type(p.annotation)).json_schema()
        except Exception:
            return p
    return None


def _response_model(model_name: str, returns: Any, func_name: str, fail) -> Any:
    if returns is inspect.Parameter.empty or returns is None or returns is type(None):
        return None
    try:
        annotation = datatypes.response_type(returns)
        if annotation is None:  # a type that is documented by its media type, not a schema
            return None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation.model_json_schema()
            return annotation
        documented = datatypes.nullable_floats(annotation)
        model = type(
            model_name, (RootModel[documented],), {"__module__": __name__}  # type: ignore[valid-type]
        )
        model.model_json_schema()
        return model
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise fail(
            AnnotationError,
            f"{func_name}() return annotation '{type_name(returns)}' cannot become a JSON schema "
            f"({_short(exc)}); {datatypes.ADVICE}",
        ) from None


def _short(exc: Exception) -> str:
    if isinstance(exc, PydanticSchemaGenerationError):
        return "pydantic cannot validate this type"
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(exc).__name__


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Route"


def _path_shape(path: str) -> str:
    return _PATH_PARAM.sub("{}", path.rstrip("/") or "/")


def _name_models_uniquely(specs: list[RouteSpec]) -> None:
    """``foo_bar`` and ``fooBar`` both give ``FooBar...``: number the later ones."""
    taken: set[str] = set()
    for spec in specs:
        for model in (spec.body_model, spec.query_model, spec.response_model):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                continue
            if model.__module__ != __name__:
                continue  # the notebook's own model, named by its author
            base, n = model.__name__, 2
            while model.__name__ in taken:
                model.__name__ = model.__qualname__ = f"{base}{n}"
                n += 1
            taken.add(model.__name__)

