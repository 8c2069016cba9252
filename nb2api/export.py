"""Export a notebook to a standalone FastAPI project that runs without nb2api.

``nb2api export NOTEBOOK OUTDIR`` writes ``app.py`` (the marked cells' code, setup then api,
followed by explicit FastAPI wiring: one pydantic model and one endpoint per route, as
``nb2api serve`` builds them), ``requirements.txt`` pinned from the cells' imports, a
``Dockerfile``, a ``.dockerignore`` and a short ``README.md``. The wiring is generated from the
same route specs that ``nb2api serve`` mounts, and annotations are copied as the notebook spells
them, so paths, schemas and model names match.

A notebook that uses the data-science types (DataFrames, Series, arrays, numpy scalars, uploads,
images) also gets ``nbtypes/``: nb2api's own modules for them, copied verbatim (they import
nothing else of nb2api), so the exported app validates, documents and encodes those types with
the very code ``nb2api serve`` runs, and an upgrade of nb2api reaches it with the next export.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import re
import sys
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import NotebookError
from .load import Cell, LoadedNotebook, load_notebook
from .routes import RouteSpec, build_routes
from .types import datatypes, images, uploads

_TEMPLATES = Path(__file__).parent / "templates" / "export"
_SERVER_REQUIREMENTS = ("fastapi", "pydantic", "uvicorn")
# nb2api modules that make up the exported ``nbtypes`` package: each imports only the others
# (relatively) and third-party packages, on every path the exported app takes.
_SUPPORT_MODULES = ("_lazy", "frames", "datatypes", "display", "encoding", "images", "uploads")
_SUPPORT_REQUIREMENTS = ("numpy", "orjson", "pandas")
_UPLOAD_REQUIREMENTS = ("python-multipart",)
_OPTIONAL_UPLOAD_REQUIREMENTS = ("pyarrow",)  # Parquet uploads; pinned when installed here


class ExportError(NotebookError):
    """The notebook loads, but part of it cannot be written as standalone code."""


@dataclass(frozen=True)
class ExportedProject:
    """What :func:`export_notebook` wrote."""

    folder: Path
    files: tuple[Path, ...]
    requirements: tuple[str, ...]
    app_name: str  # the module-level name of the FastAPI app in app.py (``app`` unless taken)
    warnings: tuple[str, ...] = ()


def export_notebook(
    notebook: str | Path | LoadedNotebook, folder: str | Path, *, overwrite: bool = False
) -> ExportedProject:
    """Write a standalone FastAPI project for ``notebook`` into ``folder``.

    The notebook is loaded (its setup and api cells run) to read its route specs. Raises
    :class:`NotebookError` when it cannot be served, and ``FileExistsError`` when ``folder`` holds
    files of a previous export and ``overwrite`` is false.
    """
    loaded = notebook if isinstance(notebook, LoadedNotebook) else load_notebook(notebook)
    specs = build_routes(loaded)
    app = render_app(loaded, specs)
    extra: list[str] = []
    if app.support:
        extra += _SUPPORT_REQUIREMENTS
    if app.uploads:
        extra += _UPLOAD_REQUIREMENTS
        extra += [d for d in _OPTIONAL_UPLOAD_REQUIREMENTS if _installed(d)]
    requirements, requirement_warnings = find_requirements(loaded, extra)
    folder = Path(folder)
    contents = {
        "app.py": app.source,
        **(support_package() if app.support else {}),
        "requirements.txt": "".join(f"{r}\n" for r in requirements),
        "Dockerfile": _template("Dockerfile").format(
            python=f"{sys.version_info.major}.{sys.version_info.minor}", app=app.name
        ),
        ".dockerignore": _template("dockerignore"),
        "README.md": _template("README.md").format(
            title=loaded.notebook.title or loaded.notebook.name,
            notebook=loaded.notebook.path.name,
            notebook_stem=re.sub(r"[^a-z0-9]+", "-", loaded.notebook.name.lower()).strip("-")
            or "notebook",
            app=app.name,
            version=__version__,
            routes="".join(f"- `{s.method} {s.path}`: {s.summary or s.name + '()'}\n"
                           for s in specs),
        ),
    }
    existing = [name for name in contents if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(existing)}; choose an empty folder or overwrite"
        )
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in contents.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        files.append(folder / name)
    warnings = [
        *loaded.warnings,
        *(w for s in specs for w in s.warnings),
        *app.warnings,
        *requirement_warnings,
    ]
    return ExportedProject(folder, tuple(files), tuple(requirements), app.name, tuple(warnings))


def _template(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


# --- nbtypes: the data-science types, for the exported app -------------------------------------


def support_package() -> dict[str, str]:
    """``nbtypes/``: nb2api's modules for the data-science types, verbatim, and an ``__init__``.

    The modules are copied from nb2api's own source, so the export cannot drift from what
    ``nb2api serve`` does; a test checks that they import nothing else of nb2api.
    """
    package = Path(__file__).parent / "types"
    header = (
        "# Copied verbatim from nb2api {version} (nb2api/{name}.py) by `nb2api export`: the same\n"
        "# code `nb2api serve` runs. Do not edit; export the notebook again to update it.\n"
    )
    files = {"nbtypes/__init__.py": _template("nbtypes_init.py").format(version=__version__)}
    for name in _SUPPORT_MODULES:
        source = (package / f"{name}.py").read_text(encoding="utf-8")
        files[f"nbtypes/{name}.py"] = header.format(version=__version__, name=name) + source
    return files


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# --- requirements ------------------------------------------------------------------------------


def find_requirements(
    loaded: LoadedNotebook, extra: list[str] | tuple[str, ...] = ()
) -> tuple[list[str], list[str]]:
    """Pinned distributions for the marked cells' imports, plus the server's own and ``extra``.

    Returns ``(requirements, warnings)``; a module that no installed distribution provides (a
    local ``helpers.py`` next to the notebook, say) is reported, not guessed.
    """
    modules: dict[str, Cell] = {}
    for cell in loaded.notebook.cells:
        for name in imported_modules(cell.code):
            modules.setdefault(name, cell)
    providers = importlib.metadata.packages_distributions()
    pins: dict[str, str] = {}
    warnings = []
    folder = loaded.notebook.path.resolve().parent
    for module, cell in modules.items():
        if module in sys.stdlib_module_names or module in ("__future__", "nb2api"):
            if module == "nb2api":
                warnings.append(f"{cell.ref}: imports nb2api, which the export does not install")
            continue
        distributions = providers.get(module)
        if not distributions:
            local = (folder / f"{module}.py").exists() or (folder / module).is_dir()
            where = "a local module: copy it next to app.py" if local else (
                "no installed distribution provides it: add it to requirements.txt by hand"
            )
            warnings.append(f"{loaded.notebook.path}, {cell.ref}: imports '{module}', {where}")
            continue
        for dist in distributions:
            pins.setdefault(dist.lower(), _pin(dist))
    for dist in (*_SERVER_REQUIREMENTS, *extra):
        pins.setdefault(dist, _pin(dist))
    pins["uvicorn"] = pins["uvicorn"].replace("uvicorn", "uvicorn[standard]", 1)
    return [pins[name] for name in sorted(pins)], warnings


def imported_modules(code: str) -> list[str]:
    """Top-level names of the modules that ``code`` imports (absolute imports only), in order."""
    names: list[str] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".")[0]
            if top not in names:
                names.append(top)
    return names


def _pin(distribution: str) -> str:
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


# --- app.py ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedApp:
    source: str
    name: str  # the FastAPI app's name in the module
    warnings: tuple[str, ...] = ()
    support: bool = False  # app.py imports the nbtypes package
    uploads: bool = False  # a route takes a file (multipart)


_NEW = object()
_SUPPORT = object()  # the exported nbtypes package, as a name the wiring binds


class _Names:
    """Module-level names for the wiring that never rebind one the notebook's code relies on.

    The wiring runs after the cells, in the same module; ``from fastapi import Path`` there would
    replace the notebook's ``pathlib.Path`` under its functions' feet. A name the notebook already
    binds to another object gets a leading underscore instead.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._taken: dict[str, Any] = dict(namespace)

    def __call__(self, name: str, obj: Any = _NEW) -> str:
        if obj is not _NEW and name in self._taken and self._taken[name] is obj:
            return name
        candidate, n = name, 1
        while candidate in self._taken:
            candidate = f"_{name}" if n == 1 else f"_{name}{n}"
            n += 1
        self._taken[candidate] = obj
        return candidate


@dataclass
class _Imports:
    names: _Names
    lines: dict[str, list[str]] = field(default_factory=dict)

    def use(self, module: str, name: str) -> str:
        obj = getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name)
        alias = self.names(name, obj)
        entry = name if alias == name else f"{name} as {alias}"
        self.lines.setdefault(module, [])
        if entry not in self.lines[module]:
            self.lines[module].append(entry)
        return alias

    def module(self, module: str) -> str:
        alias = self.names(module, __import__(module))
        self.lines.setdefault("", [])
        entry = module if alias == module else f"{module} as {alias}"
        if entry not in self.lines[""]:
            self.lines[""].append(entry)
        return alias

    def render(self) -> str:
        # ``os`` is imported at the top of the file already.
        plain = [f"import {entry}" for entry in sorted(self.lines.get("", [])) if entry != "os"]
        froms = [
            f"from {module} import {', '.join(sorted(entries))}"
            for module, entries in sorted(self.lines.items())
            if module and module != "nbtypes"
        ]
        local = [f"import {entry}" for entry in self.lines.get("nbtypes", [])]
        blocks = [block for block in (plain, froms, local) if block]
        return "\n\n".join("\n".join(block) for block in blocks)

    def support(self) -> str:
        """The local ``nbtypes`` package (written next to app.py), imported as a module."""
        alias = self.names("nbtypes", _SUPPORT)
        entry = "nbtypes" if alias == "nbtypes" else f"nbtypes as {alias}"
        self.lines["nbtypes"] = [entry]
        return alias


def render_app(loaded: LoadedNotebook, specs: list[RouteSpec]) -> RenderedApp:
    """The source of a standalone ``app.py`` serving ``specs`` like ``nb2api serve`` does."""
    nb = loaded.notebook
    futures, cells = _cell_sections(loaded)
    names = _Names(loaded.module.__dict__)
    imports = _Imports(names)
    n = _Wiring(loaded, names, imports)
    body = n.render(specs)
    title = nb.title or nb.name
    doc = (
        f'"""{title}: an HTTP API from the notebook `{nb.path.name}`.\n\n'
        f"Exported by nb2api {__version__}: the notebook's marked cells, in order, then the\n"
        "FastAPI wiring that serves their functions. It does not need nb2api. Run it with\n\n"
        f"    uvicorn app:{n.app} --host 127.0.0.1 --port 8000\n"
        '"""\n'
    )
    header = [doc]
    if futures:
        header.append("".join(f"from __future__ import {name}\n" for name in sorted(futures)))
    header.append(
        "\nimport os\n\n"
        "# Relative paths in the cells resolve from this folder, as they did from the notebook's.\n"
        "os.chdir(os.path.dirname(os.path.abspath(__file__)))\n"
    )
    wiring = _banner("HTTP API, generated by nb2api export") + imports.render() + "\n\n" + body
    source = "".join(header) + "".join(cells) + "\n" + wiring
    compile(source, "app.py", "exec")  # an export that does not even parse is nb2api's bug
    return RenderedApp(source, n.app, tuple(n.warnings), support="nbtypes" in imports.lines,
                       uploads=n.uploads)


def _str(text: str) -> str:
    """A double-quoted Python string literal (JSON's escapes are all valid Python)."""
    return json.dumps(text, ensure_ascii=False)


def _scoped(names: _Names, class_name: str, schema_name: str, source: str) -> str:
    """``source`` defines class ``schema_name``; bind it to ``class_name`` at module level.

    When the notebook already uses the schema's name, the class is made inside a function, so
    OpenAPI still names it ``schema_name`` while the notebook's own name stays untouched.
    """
    if class_name == schema_name:
        return source
    factory = names(f"make_{schema_name}")
    body = textwrap.indent(source.rstrip("\n"), "    ")
    return (
        f"def {factory}():  # the notebook has its own {schema_name}\n{body}\n\n"
        f"    return {schema_name}\n\n\n{class_name} = {factory}()\n"
    )


def _banner(text: str) -> str:
    rule = "# " + "-" * 97
    return f"\n\n{rule}\n# {text}\n{rule}\n"


def _cell_sections(loaded: LoadedNotebook) -> tuple[set[str], list[str]]:
    """Each marked cell's code under a banner; ``from __future__`` imports lifted to the top."""
    futures: set[str] = set()
    sections = []
    for cell in loaded.notebook.cells:
        lines = cell.code.splitlines()
        for line, text in cell.dropped:
            lines[line - 1] = f"# left out by nb2api export (IPython only): {text}"
        for node in ast.parse(cell.code).body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                futures.update(alias.name for alias in node.names)
                for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                    lines[i] = ""
                lines[node.lineno - 1] = "# (from __future__ import moved to the top of the file)"
        while lines and not lines[-1].strip():
            lines.pop()
        banner = _banner(f"Notebook cell {cell.index} ({cell.kind})")
        sections.append(banner + "\n".join(lines) + "\n")
    return futures, sections


class _Wiring:
    """Writes the models, helpers and endpoints that ``nb2api.app.build_app`` builds at run time."""

    def __init__(self, loaded: LoadedNotebook, names: _Names, imports: _Imports) -> None:
        self.loaded = loaded
        self.namespace = loaded.module.__dict__
        self.names = names
        self.imports = imports
        self.app = names("app")
        self.warnings: list[str] = []
        self.uploads = False
        self.support = False  # the notebook uses data-science types: app.py imports nbtypes
        self.tables: dict[str, str] = {}  # route name -> its list of uploaded tables

    @property
    def nbtypes(self) -> str:
        """The exported ``nbtypes`` package's name in app.py (imported on first use)."""
        return self.imports.support()

    # Each helper is written once, under a name that the notebook does not use.
    def render(self, specs: list[RouteSpec]) -> str:
        use, mod = self.imports.use, self.imports.module
        self.BaseModel = use("pydantic", "BaseModel")
        self.Field = use("pydantic", "Field")
        self.Annotated = use("typing", "Annotated")
        self.Any = use("typing", "Any")
        self.Response = use("fastapi.responses", "Response")
        self.HTTPException = use("starlette.exceptions", "HTTPException")
        error_body, result_error = self.names("ErrorBody"), self.names("ResultError")
        error_response, responses = self.names("error_response"), self.names("ERROR_RESPONSES")
        pool, run_in_pool = self.names("worker_pool"), self.names("run_in_pool")
        dumps, jsonable = self.names("dumps"), self.names("jsonable")
        checked = self.names("checked")
        logger, lifespan = self.names("logger"), self.names("lifespan")
        debug, healthz, readyz = self.names("DEBUG"), self.names("healthz"), self.names("readyz")
        self.h = {
            "error_body": error_body,
            "result_error": result_error,
            "error_response": error_response,
            "responses": responses,
            "run_in_pool": run_in_pool,
            "dumps": dumps,
            "checked": checked,
        }
        self.support = any(_needs_support(spec) for spec in specs)
        routes = [self._route(spec) for spec in specs]
        if self.support:
            result_error_def = ""
            encoders_def = _SUPPORT_ENCODERS.format(
                dumps=dumps, result_error=result_error, nbtypes=self.nbtypes
            )
        else:
            result_error_def = _RESULT_ERROR.format(result_error=result_error)
            encoders_def = _ENCODERS.format(
                jsonable=jsonable, dumps=dumps, checked=checked, Any=self.Any,
                to_json=use("pydantic_core", "to_json"), result_error=result_error,
                ValidationError=use("pydantic", "ValidationError"),
            )
        helpers = _HELPERS.format(
            result_error_def=result_error_def,
            encoders_def=encoders_def,
            asyncio=mod("asyncio"),
            contextvars=mod("contextvars"),
            functools=mod("functools"),
            logging=mod("logging"),
            os=mod("os"),
            traceback=mod("traceback"),
            uuid=mod("uuid"),
            ThreadPoolExecutor=use("concurrent.futures", "ThreadPoolExecutor"),
            asynccontextmanager=use("contextlib", "asynccontextmanager"),
            JSONResponse=use("fastapi.responses", "JSONResponse"),
            FastAPI=use("fastapi", "FastAPI"),
            BaseModel=self.BaseModel,
            Any=self.Any,
            error_body=error_body,
            error_body_class=_scoped(self.names, error_body, "ErrorBody", _ERROR_BODY.format(
                BaseModel=self.BaseModel)),
            error_response=error_response,
            responses=responses,
            pool=pool,
            run_in_pool=run_in_pool,
            logger=logger,
            lifespan=lifespan,
            debug=debug,
            healthz=healthz,
            readyz=readyz,
            app=self.app,
            title=_str(self.loaded.notebook.title or self.loaded.notebook.name),
            notebook=self.loaded.notebook.path.name,
        )
        helpers = re.sub(r"\n{4,}", "\n\n\n", helpers)  # where a block was left out
        return helpers + "".join(routes) + _MAIN.format(app=self.app, os=mod("os"))

    def _route(self, spec: RouteSpec) -> str:
        source = _FunctionSource.find(spec)
        func = self.names(spec.name, spec.func)  # the notebook's function, by its own name
        if func != spec.name:
            raise self._error(spec, f"{spec.name}() is not a module-level name the wiring can call")
        out: list[str] = []
        body_params = [p for p in spec.params if p.source == "body"]
        query_params = [p for p in spec.params if p.source == "query"]
        endpoint_params: list[str] = []
        for p in spec.params:
            if p.source == "path":
                annotation = self._annotation(spec, source, p)
                if p.description:
                    Path_ = self.imports.use("fastapi", "Path")
                    marker = f"{Path_}(description={_str(p.description)})"
                    annotation = f"{self.Annotated}[{annotation}, {marker}]"
                endpoint_params.append(f"{p.name}: {annotation}")
        arguments = {p.name: p.name for p in spec.params if p.source == "path"}
        for model, params, kind in (
            (spec.query_model, query_params, "query"),
            (spec.body_model, body_params, "body"),
        ):
            if model is None:
                continue
            class_name = self.names(model.__name__)
            out.append(self._model(spec, source, class_name, model.__name__, params))
            marker = self.imports.use("fastapi", "Query" if kind == "query" else "Body")
            optional = kind == "body" and all(not p.required for p in params)
            annotation = f"{self.Annotated}[{class_name}, {marker}()]"
            endpoint_params.append(f"{kind}: {annotation}" + (" = None" if optional else ""))
            if optional:
                arguments["__optional_body__"] = class_name
            for p in params:
                arguments[p.name] = f"{kind}.{p.name}"
        tables = self._multipart(spec, source, endpoint_params, arguments, out)

        response_model, encoded, support_encoder, image = self._response(spec, source, out)
        call_args = []
        optional_body = arguments.pop("__optional_body__", None)
        for p in spec.params:
            value = arguments[p.name]
            call_args.append(value if p.positional_only else f"{p.name}={value}")
        result_error = self.h["result_error"]
        if spec.is_async:
            call = [f"result = await {spec.name}({', '.join(call_args)})",
                    f"content = {encoded}"]
        elif support_encoder:
            # Encoded on the worker thread too: a big table or a figure never holds the loop.
            run = f"{self.nbtypes}.encode_after({spec.name}, {support_encoder})"
            call = [f"content = await {self.h['run_in_pool']}({', '.join([run, *call_args])})"]
        else:
            call = [f"result = await {self.h['run_in_pool']}({', '.join([spec.name, *call_args])})",
                    f"content = {encoded}"]
        summary = spec.summary or spec.name.replace("_", " ").title()  # as FastAPI names it
        decorator_args = [
            _str(spec.path), f"name={_str(spec.name)}", f"operation_id={_str(spec.name)}",
            f"summary={_str(summary)}",
        ]
        if spec.description:
            decorator_args.append(f"description={_str(spec.description)}")
        if response_model:
            decorator_args.append(f"response_model={response_model}")
        if image:
            decorator_args.append(f"response_class={self.nbtypes}.response_class({image})")
            decorator_args.append(
                f"responses={{**{self.h['responses']}, **{self.nbtypes}.image_responses({image})}}"
            )
        else:
            decorator_args.append(f"responses={self.h['responses']}")
        endpoint = self.names(f"{spec.name}_endpoint")
        signature = f"async def {endpoint}({', '.join(endpoint_params)}) -> {self.Response}:"
        if len(signature) > 99:
            signature = "\n".join([f"async def {endpoint}(",
                                   *(f"    {param}," for param in endpoint_params),
                                   f") -> {self.Response}:"])
        lines = [
            f"@{self.app}.{spec.method.lower()}(",
            *(f"    {arg}," for arg in decorator_args),
            ")",
            signature,
        ]
        if optional_body:
            lines.append(f"    body = body if body is not None else {optional_body}()")
        if tables:
            lines += [
                f"    files = {{{', '.join(f'{_str(p.name)}: {p.name}' for p in tables)}}}",
                f"    await {self.nbtypes}.receive({self._tables_name(spec)}, files)"
                "  # CSV or Parquet, read into DataFrames",
            ]
        media_type = images.media_type(spec.returns) or "application/json"
        lines += [
            "    try:",
            *(f"        {line}" for line in call),
            f"    except {self.HTTPException}:",
            "        raise",
            f"    except {result_error} as exc:",
            f"        return {self.h['error_response']}(",
            f"            {_str(spec.name)}, exc, \"returned a value that does not match its "
            "return annotation\",",
            "        )",
            "    except Exception as exc:",
            f"        return {self.h['error_response']}({_str(spec.name)}, exc)",
            f"    return {self.Response}(content, media_type={_str(media_type)})",
        ]
        out.append("\n".join(lines) + "\n")
        return "\n\n" + "\n\n".join(out)

    def _tables_name(self, spec: RouteSpec) -> str:
        if spec.name not in self.tables:
            self.tables[spec.name] = self.names(f"{spec.name}_tables")
        return self.tables[spec.name]

    def _multipart(self, spec: RouteSpec, source, endpoint_params: list[str],
                   arguments: dict[str, str], out: list[str]) -> list:
        """A route that takes a file: its file and form parameters, as nb2api serve reads them.

        Returns the parameters whose upload is read into a DataFrame (``nbtypes.receive``).
        """
        multipart = [p for p in spec.params if p.source in ("file", "form")]
        if not multipart:
            return []
        self.uploads = True
        tables = []
        for p in multipart:
            if p.source == "form":
                base = self._annotation(spec, source, p)
                marker = self.imports.use("fastapi", "Form")
                description = p.description
            else:
                kind = uploads.upload_kind(p.annotation)
                base = "bytes" if kind == "bytes" else self.imports.use("fastapi", "UploadFile")
                marker = self.imports.use("fastapi", "File")
                description = p.description or (
                    "A CSV or Parquet file, read into a table" if kind == "frame" else None
                )
                if not p.required:
                    base += " | None"
                if kind == "frame":
                    tables.append(p)
                    arguments[p.name] = f"files[{_str(p.name)}]"
            args = f"description={_str(description)}" if description else ""
            text = f"{p.name}: {self.Annotated}[{base}, {marker}({args})]"
            if not p.required:
                text += f" = {self._default(spec, source, p)}"
            endpoint_params.append(text)
            arguments.setdefault(p.name, p.name)
        if tables:
            items = ", ".join(
                f"{self.nbtypes}.Upload({_str(p.name)}, {self._written(spec, source, p)})"
                for p in tables
            )
            out.append(f"{self._tables_name(spec)} = [{items}]\n")
        return tables

    def _written(self, spec: RouteSpec, source: _FunctionSource, p) -> str:
        """A parameter's annotation exactly as the notebook wrote it."""
        node = source.params.get(p.name)
        if node is None:
            raise self._error(spec, f"cannot find the annotation of '{p.name}' in the source")
        return self._text(node)

    def _model(self, spec, source, class_name: str, schema_name: str, params) -> str:
        lines = [f"class {schema_name}({self.BaseModel}):"]
        if any(p.name.startswith("model_") for p in params):
            ConfigDict = self.imports.use("pydantic", "ConfigDict")
            lines.append(f"    model_config = {ConfigDict}(protected_namespaces=())")
        for p in params:
            annotation = self._annotation(spec, source, p)
            default = None if p.required else self._default(spec, source, p)
            if p.description:
                args = ([default] if default is not None else []) + [
                    f"description={_str(p.description)}"
                ]
                lines.append(f"    {p.name}: {annotation} = {self.Field}({', '.join(args)})")
            elif default is not None:
                lines.append(f"    {p.name}: {annotation} = {default}")
            else:
                lines.append(f"    {p.name}: {annotation}")
        return _scoped(self.names, class_name, schema_name, "\n".join(lines) + "\n")

    def _response(
        self, spec: RouteSpec, source, out: list[str]
    ) -> tuple[str | None, str, str, str]:
        """``response_model=`` text, the expression encoding ``result``, the name of nbtypes'
        encoder when one is used (else empty) and, for an image route, its return annotation."""
        returns = spec.returns
        dumps = f"{self.h['dumps']}(result)"
        if returns is inspect.Parameter.empty or returns is None or returns is type(None):
            return None, dumps, "", ""
        model = spec.response_model
        text = self._type_text(spec, source.returns, returns, returns)
        image = images.media_type(returns) is not None
        if returns is not typing.Any and self.support:
            # A type nb2api converts itself: nbtypes' encoder and schema, as under serve.
            encoder = self.names(f"{spec.name}_encode")
            out.append(f"{encoder} = {self.nbtypes}.make_encoder({text})\n")
            if image:
                return None, f"{encoder}(result)", encoder, text
            text = f"{self.nbtypes}.response_type({text})"
            encoded = f"{encoder}(result)"
        elif returns is typing.Any:
            return None, dumps, "", ""
        else:
            encoder = ""
            adapter = self.names(f"{spec.name}_result")
            TypeAdapter = self.imports.use("pydantic", "TypeAdapter")
            out.append(f"{adapter} = {TypeAdapter}({text})\n")
            encoded = f"{self.h['checked']}({adapter}, result)"
        if model is None:
            return None, encoded, encoder, ""
        if isinstance(model, type) and model.__module__ == "nb2api.routes":
            class_name = self.names(model.__name__)
            RootModel = self.imports.use("pydantic", "RootModel")
            lines = [f"class {model.__name__}({RootModel}[{text}]):", "    pass"]
            out.append(_scoped(self.names, class_name, model.__name__, "\n".join(lines) + "\n"))
            return class_name, encoded, encoder, ""
        return text, encoded, encoder, ""

    def _annotation(self, spec: RouteSpec, source: _FunctionSource, p) -> str:
        if not p.annotated:
            return self.Any
        return self._type_text(spec, source.params.get(p.name), p.annotation,
                               datatypes.request_type(p.annotation))

    def _type_text(self, spec, node: ast.expr | None, annotation: Any, mapped: Any) -> str:
        """The annotation as the notebook wrote it; wrapped in ``nbtypes.request_type`` when
        nb2api converts it (a DataFrame, say), as ``nb2api serve`` does."""
        if node is None:
            raise self._error(spec, f"cannot find the annotation '{annotation}' in the source")
        text = self._text(node)
        if mapped is not annotation:
            return f"{self.nbtypes}.request_type({text})"
        return text

    @staticmethod
    def _text(node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.strip()  # a string annotation: its text is the expression
        return ast.unparse(node)

    def _default(self, spec: RouteSpec, source: _FunctionSource, p) -> str:
        """The default as a literal when it is one, else read from the function itself."""
        value = p.default
        text = repr(value)
        try:
            if ast.literal_eval(text) == value and type(ast.literal_eval(text)) is type(value):
                return text
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        node = source.defaults.get(p.name)
        if isinstance(node, (ast.Name, ast.Attribute)):
            expression = ast.unparse(node)
            try:
                if eval(expression, self.namespace) is value:  # a module constant or enum member
                    return expression
            except Exception:
                pass
        signature = self.imports.use("inspect", "signature")
        return f"{signature}({spec.name}).parameters[{_str(p.name)}].default"

    def _error(self, spec: RouteSpec, reason: str) -> ExportError:
        return ExportError(
            reason,
            path=str(self.loaded.notebook.path),
            cell=spec.function.cell.ref,
            line=spec.function.line,
            function=spec.name,
        )


def _needs_support(spec: RouteSpec) -> bool:
    """Whether a route uses a type that nb2api converts itself (a DataFrame, an upload, ...)."""
    returns = spec.returns
    if returns is not inspect.Parameter.empty and (
        images.media_type(returns) is not None or datatypes.response_type(returns) is not returns
    ):
        return True
    return any(
        p.source in ("file", "form") or datatypes.request_type(p.annotation) is not p.annotation
        for p in spec.params
    )


@dataclass(frozen=True)
class _FunctionSource:
    """The annotation and default expressions of a function's ``def``, as written."""

    params: dict[str, ast.expr]
    defaults: dict[str, ast.expr]
    returns: ast.expr | None

    @classmethod
    def find(cls, spec: RouteSpec) -> _FunctionSource:
        function = spec.function
        tree = ast.parse(function.cell.code)
        nodes = [
            node
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == spec.name
            and min([node.lineno] + [d.lineno for d in node.decorator_list]) == function.line
        ]
        if not nodes:
            return cls({}, {}, None)
        args = nodes[-1].args
        positional = args.posonlyargs + args.args
        defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]],
                            args.defaults, strict=True))
        defaults.update(
            {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d}
        )
        params = {a.arg: a.annotation for a in positional + args.kwonlyargs if a.annotation}
        return cls(params, defaults, nodes[-1].returns)


_HELPERS = '''
{logger} = {logging}.getLogger("app")
# Plain `def` functions run on this bounded pool, so a slow one never blocks the event loop.
{pool} = {ThreadPoolExecutor}(
    max_workers=int({os}.environ.get("MAX_WORKERS", 0)) or min(32, ({os}.cpu_count() or 1) + 4),
    thread_name_prefix="worker",
)
{debug} = {os}.environ.get("DEBUG", "") not in ("", "0", "false")  # tracebacks in 500 responses


async def {run_in_pool}(func, /, *args, **kwargs):
    loop = {asyncio}.get_running_loop()
    call = {functools}.partial({contextvars}.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor({pool}, call)


{error_body_class}

{responses} = {{
    500: {{"model": {error_body}, "description": "The notebook code raised"}},
}}


{result_error_def}
def {error_response}(name: str, exc: Exception, what: str | None = None) -> {JSONResponse}:
    error_id = {uuid}.uuid4().hex[:12]
    message = f"{{name}}() {{what}}" if what else f"{{name}}() raised {{type(exc).__name__}}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{{message}}: {{text}}" if text else message
    if len(detail) > 300:
        detail = detail[:297] + "..."
    {logger}.error("%s [error_id=%s]", detail, error_id, exc_info=exc)
    body = {{"detail": detail, "error_id": error_id}}
    if {debug}:
        body["traceback"] = {traceback}.format_exception(exc)
    return {JSONResponse}(body, status_code=500)


{encoders_def}
@{asynccontextmanager}
async def {lifespan}(app):
    yield
    {pool}.shutdown(wait=False, cancel_futures=True)


{app} = {FastAPI}(
    title={title},
    description="Exported by nb2api from the notebook `{notebook}`.",
    lifespan={lifespan},
)


@{app}.get("/healthz", include_in_schema=False)
async def {healthz}() -> dict[str, str]:
    return {{"status": "ok"}}


@{app}.get("/readyz", include_in_schema=False)
async def {readyz}() -> dict[str, str]:
    return {{"status": "ready"}}
'''

_RESULT_ERROR = '''class {result_error}(Exception):
    """A function returned something that does not fit its return annotation."""


'''

_ENCODERS = '''def {jsonable}(value: {Any}) -> {Any}:
    """JSON for what pydantic does not know: numpy arrays and scalars, pandas objects."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame: its records
        return value.to_dict(orient="records")
    if hasattr(value, "to_dict") and hasattr(value, "index"):  # a Series
        if type(value.index).__name__ == "RangeIndex" and value.index.start == 0:
            return value.tolist()
        return value.to_dict()
    if hasattr(value, "tolist"):  # a numpy array or scalar
        return value.tolist()
    raise TypeError(f"cannot encode {{type(value).__name__}} as JSON")


def {dumps}(value: {Any}) -> bytes:
    return {to_json}(value, fallback={jsonable}, inf_nan_mode="null")


def {checked}(adapter, value: {Any}) -> bytes:
    """Validate a return value against its annotation, then encode it."""
    try:
        value = adapter.validate_python(value, from_attributes=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise {result_error}(f"{{where + ': ' if where else ''}}{{first['msg']}}") from None
    return adapter.dump_json(value)


'''

# With nbtypes, every result is written by nb2api's own encoders, as under nb2api serve.
_SUPPORT_ENCODERS = '''# nb2api's encoders write every result (numpy, pandas values anywhere in it).
{dumps} = {nbtypes}.dumps
{result_error} = {nbtypes}.ResultError


'''

_ERROR_BODY = '''class ErrorBody({BaseModel}):
    """What a route answers when the notebook code raised."""

    detail: str
    error_id: str
'''

_MAIN = '''

if __name__ == "__main__":
    import uvicorn

    host, port = {os}.environ.get("HOST", "127.0.0.1"), int({os}.environ.get("PORT", "8000"))
    uvicorn.run({app}, host=host, port=port)
'''

