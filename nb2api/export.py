"""Export a notebook to a standalone FastAPI project that runs without nb2api.

``nb2api export NOTEBOOK OUTDIR`` writes ``app.py`` (the marked cells' code, setup then api,
followed by FastAPI wiring: one pydantic model and one endpoint per route, as ``nb2api serve``
builds them), ``nbtypes/`` (nb2api's own ``nb2api/types`` package, byte for byte),
``static/`` (the Swagger UI and ReDoc files behind ``/docs`` and ``/redoc``), a pinned
``requirements.txt``, a ``Dockerfile``, a ``.dockerignore`` and a short ``README.md``.

The wiring is generated from the same route specs that ``nb2api serve`` mounts, with the
annotations as the notebook spells them, so paths, schemas and model names match. It declares;
it does not behave: every endpoint hands its call to ``nbtypes`` (``make_encoder``,
``encode_after``, ``respond``, ``receive``), the very code ``nb2api serve`` answers with, so the
two cannot drift apart, and an upgrade of nb2api reaches the app with the next export.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.metadata
import inspect
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi
from fastapi import params as fastapi_params

from ._version import __version__
from .errors import NotebookError
from .k8s import kubernetes_manifests, kubernetes_readme, peak_memory
from .load import Cell, LoadedNotebook, load_notebook
from .routes import RouteSpec, build_routes
from .serve.docs import ASSETS_PATH, STATIC, has_local_assets
from .serve.examples import answer_at_load, example_cases, route_examples
from .types import answers, datatypes, images, uploads

_TEMPLATES = Path(__file__).parent / "templates" / "export"
_TYPES = Path(__file__).parent / "types"  # vendored as nbtypes/, byte for byte
_VENDORED = "nbtypes"
# How cells run (as a Jupyter kernel runs them): vendored as nbkernel.py, byte for byte.
_KERNEL = Path(__file__).parent / "load" / "kernel.py"
_KERNEL_MODULE = "nbkernel"
# /metrics and the API_TOKEN check of the exported app: vendored as nbops.py, byte for byte.
_OPS = _TEMPLATES / "nbops.py"
_OPS_MODULE = "nbops"
# The server, and what the vendored package imports (numpy and pandas only when they are used).
_SERVER_REQUIREMENTS = ("anyio", "fastapi", "orjson", "prometheus-client", "pydantic",
                        "uvicorn")
_DATA_REQUIREMENTS = ("numpy", "pandas")
_UPLOAD_REQUIREMENTS = ("python-multipart",)
_OPTIONAL_UPLOAD_REQUIREMENTS = ("pyarrow",)  # Parquet uploads; pinned when installed here
_MARKERS = ("Header", "Cookie", "Query", "Path", "Form")  # FastAPI's, that say where a value is


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
    notebook: str | Path | LoadedNotebook, folder: str | Path, *, overwrite: bool = False,
    k8s: bool = False,
) -> ExportedProject:
    """Write a standalone FastAPI project for ``notebook`` into ``folder``; with ``k8s``, also
    its Kubernetes manifests in ``k8s/`` (:mod:`nb2api.k8s`).

    The notebook is loaded (its setup and api cells run) to read its route specs. Raises
    :class:`NotebookError` when it cannot be served, and ``FileExistsError`` when ``folder`` holds
    files of a previous export and ``overwrite`` is false.
    """
    loaded = notebook if isinstance(notebook, LoadedNotebook) else load_notebook(notebook)
    memory = peak_memory()  # with the notebook's data loaded: the pod's memory request
    specs = build_routes(loaded)
    app = render_app(loaded, specs)
    extra: list[str] = []
    if app.uploads:
        extra += _UPLOAD_REQUIREMENTS
        extra += [d for d in _OPTIONAL_UPLOAD_REQUIREMENTS if _installed(d)]
    requirements, requirement_warnings = find_requirements(loaded, extra)
    folder = Path(folder)
    assets = static_assets()
    tests = example_tests(loaded, specs, app.name)
    stem = re.sub(r"[^a-z0-9]+", "-", loaded.notebook.name.lower()).strip("-") or "notebook"
    manifests = kubernetes_manifests(stem, loaded.load_seconds, memory) if k8s else {}
    contents: dict[str, str | bytes] = {
        "app.py": app.source,
        **vendored_types(),
        **assets,
        "requirements.txt": "".join(f"{r}\n" for r in requirements),
        "Dockerfile": _template("Dockerfile").format(
            python=f"{sys.version_info.major}.{sys.version_info.minor}", app=app.name
        ),
        ".dockerignore": _template("dockerignore"),
        "README.md": _template("README.md").format(
            title=loaded.notebook.title or loaded.notebook.name,
            notebook=loaded.notebook.path.name,
            notebook_stem=stem,
            app=app.name,
            version=__version__,
            routes="".join(f"- `{s.method} {s.path}`: {s.summary or s.name + '()'}\n"
                           for s in specs),
            tests=_template("README-tests.md") if tests else "",
            kubernetes=kubernetes_readme(stem) if k8s else "",
        ),
        **tests,
        **manifests,
    }
    existing = [name for name in contents if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(existing[:3])}"
            f"{' and more' if len(existing) > 3 else ''}; choose an empty folder or overwrite"
        )
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, data in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            (folder / name).write_bytes(data)
        else:
            (folder / name).write_text(data, encoding="utf-8")
        files.append(folder / name)
    warnings = [
        *loaded.warnings,
        *(w for s in specs for w in s.warnings),
        *app.warnings,
        *requirement_warnings,
    ]
    if not assets:
        warnings.append("nb2api was installed without its Swagger UI and ReDoc files: the "
                        "exported /docs and /redoc load them from a CDN")
    return ExportedProject(folder, tuple(files), tuple(requirements), app.name, tuple(warnings))


def example_tests(loaded: LoadedNotebook, specs: list[RouteSpec], app_name: str) -> dict[str, str]:
    """``tests/test_examples.py`` and the ``tests/examples.json`` it replays: the example cells'
    calls and their answers now. Empty for a notebook without examples."""
    examples = route_examples(loaded, specs)
    if not examples:
        return {}
    cases = example_cases(examples, answer_at_load(examples, budget=3600))
    return {
        "tests/test_examples.py": _template("test_examples.py"),
        "tests/examples.json": json.dumps({"app": app_name, "examples": cases}, indent=2,
                                          ensure_ascii=False) + "\n",
    }


def _template(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


# --- what the project carries: nbtypes/ and static/ ---------------------------------------------


def vendored_types() -> dict[str, bytes]:
    """``nbtypes/``: nb2api's ``types`` package, every file byte for byte, and ``VENDORED.txt``.

    The package imports nothing else of nb2api (``tests/test_layout.py`` checks it), so the
    exported app runs the code ``nb2api serve`` runs. Where it came from goes in a file of its
    own, so that the copies stay identical to the originals.
    """
    files = {
        f"{_VENDORED}/{path.relative_to(_TYPES).as_posix()}": path.read_bytes()
        for path in sorted(_TYPES.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    kernel = _KERNEL.read_bytes()
    ops = _OPS.read_bytes()
    lines = [
        f"{_VENDORED}/ is the package nb2api/types of nb2api {__version__}, copied byte for byte",
        "by `nb2api export`: the code `nb2api serve` runs to validate, encode and answer. Do not",
        "edit it; export the notebook again (also after upgrading nb2api) to update it.",
        f"../{_KERNEL_MODULE}.py is nb2api/load/kernel.py, copied the same way: it runs the cells",
        "as a Jupyter kernel (and nb2api serve) runs them.",
        f"../{_OPS_MODULE}.py is nb2api/templates/export/nbops.py, copied the same way: /metrics",
        "and the API_TOKEN check.",
        "",
        "sha256 of each file:",
        *(f"{hashlib.sha256(data).hexdigest()}  {name.partition('/')[2]}"
          for name, data in files.items()),
        f"{hashlib.sha256(kernel).hexdigest()}  ../{_KERNEL_MODULE}.py",
        f"{hashlib.sha256(ops).hexdigest()}  ../{_OPS_MODULE}.py",
    ]
    files[f"{_VENDORED}/VENDORED.txt"] = ("\n".join(lines) + "\n").encode()
    files[f"{_KERNEL_MODULE}.py"] = kernel
    files[f"{_OPS_MODULE}.py"] = ops
    return files


def static_assets() -> dict[str, bytes]:
    """``static/``: the Swagger UI and ReDoc files of nb2api's offline ``/docs`` and ``/redoc``
    (with their licenses); empty when nb2api was built without them."""
    if not has_local_assets():
        return {}
    return {
        f"static/{path.relative_to(STATIC).as_posix()}": path.read_bytes()
        for path in sorted(STATIC.rglob("*"))
        if path.is_file()
    }


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
    if _requires(pins, "numpy"):
        # numpy values reach nbtypes' encoders, which write them with pandas' help.
        extra = (*_DATA_REQUIREMENTS, *extra)
    for dist in (*_SERVER_REQUIREMENTS, *extra):
        pins.setdefault(dist, _pin(dist))
    pins["uvicorn"] = pins["uvicorn"].replace("uvicorn", "uvicorn[standard]", 1)
    return [pins[name] for name in sorted(pins)], warnings


def _requires(distributions, wanted: str) -> bool:
    """Whether ``wanted`` is among ``distributions`` or what they require, as installed here
    (a notebook that imports scikit-learn holds numpy values without importing numpy)."""
    seen: set[str] = set()
    todo = [str(d) for d in distributions]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        if name == wanted:
            return True
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [re.match(r"[A-Za-z0-9._-]*", r).group() for r in requires
                 if not re.search(r"\bextra\s*==", r)]
    return False


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
    uploads: bool = False  # a route takes a file (multipart)


_NEW = object()
_VENDORED_PACKAGE = object()  # the exported nbtypes package, as a name the wiring binds


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
            if module and module != _VENDORED
        ]
        local = [f"import {entry}" for entry in self.lines.get(_VENDORED, [])]
        blocks = [block for block in (plain, froms, local) if block]
        return "\n\n".join("\n".join(block) for block in blocks)

    def vendored(self) -> str:
        """The local ``nbtypes`` package (written next to app.py), imported as a module."""
        alias = self.names(_VENDORED, _VENDORED_PACKAGE)
        entry = _VENDORED if alias == _VENDORED else f"{_VENDORED} as {alias}"
        self.lines[_VENDORED] = [entry]
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
        "\nimport os\n"
        "import sys as _nb2api_sys\n"
        "import time as _nb2api_time\n\n"
        f"import {_KERNEL_MODULE} as _nb2api_kernel\n"
        f"import {_OPS_MODULE} as _nb2api_ops\n\n"
        "_nb2api_started = _nb2api_time.perf_counter()  # the cells' time, for /metrics\n"
        "# Relative paths in the cells resolve from this folder, as they did from the notebook's.\n"
        "os.chdir(os.path.dirname(os.path.abspath(__file__)))\n"
        "# The cells run as in a Jupyter kernel, and as under nb2api serve: __name__ is\n"
        "# \"__main__\", display() does no harm, objects pickled in Jupyter load.\n"
        "_nb2api_script = __name__ == \"__main__\"  # run as `python app.py`\n"
        "_nb2api_kernel.kernel_namespace(_nb2api_sys.modules[__name__])\n"
    )
    wiring = _banner("HTTP API, generated by nb2api export") + imports.render() + "\n\n" + body
    quiet = ("\n\n# IPython's own display(), where a cell imported it, prints without a kernel.\n"
             "_nb2api_kernel.quiet_display(globals())\n")
    source = "".join(header) + "".join(cells) + quiet + "\n" + wiring
    compile(source, "app.py", "exec")  # an export that does not even parse is nb2api's bug
    return RenderedApp(source, n.app, tuple(n.warnings), uploads=n.uploads)


_UNBATCHED = (
    "{name}() has '#| batch', which an exported project cannot keep: it calls the function once "
    "per request; remove the '#| batch' line to export it unbatched, or serve the notebook with "
    "'nb2api serve', which batches"
)


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
            note = f"# left out by nb2api export (IPython only): {text}"
            kept = lines[line - 1].rstrip()  # `pass` where a block needs a statement
            lines[line - 1] = f"{kept}  {note}" if kept.strip() else note
        for node in ast.parse(cell.code).body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                futures.update(alias.name for alias in node.names)
                for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                    lines[i] = ""
                lines[node.lineno - 1] = "# (from __future__ import moved to the top of the file)"
        while lines and not lines[-1].strip():
            lines.pop()
        banner = _banner(f"Notebook cell {cell.index} ({cell.kind})")
        code = "\n".join(lines) + "\n"
        if _awaits_at_top_level(code):
            # Not valid in a module: compiled and run as the kernel (and nb2api serve) runs it.
            code = (
                "_nb2api_kernel.run_code(compile(\n"
                f"    {code!r},\n"
                f"    {_str(f'<cell {cell.index}>')}, \"exec\", dont_inherit=True,\n"
                f"    flags=0x{ast.PyCF_ALLOW_TOP_LEVEL_AWAIT:x},  # top-level await\n"
                "), globals())  # the cell awaits at top level\n"
            )
        sections.append(banner + code)
    return futures, sections


def _awaits_at_top_level(code: str) -> bool:
    try:
        compile(code, "<cell>", "exec", dont_inherit=True)
    except SyntaxError:
        return True  # the cell compiled under nb2api's loader, so only top-level await is left
    return False


class _Wiring:
    """Writes the models and endpoints that ``nb2api.serve`` builds at run time, as declarations:
    whatever an endpoint does beyond passing its arguments on is a call into ``nbtypes``."""

    def __init__(self, loaded: LoadedNotebook, names: _Names, imports: _Imports) -> None:
        self.loaded = loaded
        self.namespace = loaded.module.__dict__
        self.names = names
        self.imports = imports
        self.app = names("app")
        self.nbtypes = imports.vendored()
        self.warnings: list[str] = []
        self.uploads = False
        self.tables: dict[str, str] = {}  # route name -> its list of uploaded tables

    # Each module-level name is chosen once, so that the notebook's own names stay untouched.
    def render(self, specs: list[RouteSpec]) -> str:
        use, mod = self.imports.use, self.imports.module
        self.BaseModel = use("pydantic", "BaseModel")
        self.Field = use("pydantic", "Field")
        self.Annotated = use("typing", "Annotated")
        self.Any = use("typing", "Any")
        self.Response = use("fastapi.responses", "Response")
        self.logger, self.debug = self.names("logger"), self.names("DEBUG")
        self.in_thread = self.names("in_thread")
        os_ = mod("os")
        app = _APP.format(
            app=self.app,
            os=os_,
            logging=mod("logging"),
            functools=mod("functools"),
            CapacityLimiter=use("anyio", "CapacityLimiter"),
            run_sync=use("anyio.to_thread", "run_sync"),
            FastAPI=use("fastapi", "FastAPI"),
            nbtypes=self.nbtypes,
            logger=self.logger,
            debug=self.debug,
            threads=self.names("worker_threads"),
            in_thread=self.in_thread,
            title=_str(self.loaded.notebook.title or self.loaded.notebook.name),
            notebook=self.loaded.notebook.path.name,
            docs_urls="\n    docs_url=None,\n    redoc_url=None," if has_local_assets() else "",
        )
        if has_local_assets():
            app += _DOCS.format(
                app=self.app,
                os=os_,
                assets=ASSETS_PATH,
                StaticFiles=use("fastapi.staticfiles", "StaticFiles"),
                Request=use("fastapi", "Request"),
                HTMLResponse=use("fastapi.responses", "HTMLResponse"),
                get_swagger_ui_html=use("fastapi.openapi.docs", "get_swagger_ui_html"),
                get_redoc_html=use("fastapi.openapi.docs", "get_redoc_html"),
                swagger_ui=self.names("swagger_ui"),
                redoc=self.names("redoc"),
            )
        app += _HEALTH.format(app=self.app, healthz=self.names("healthz"),
                              readyz=self.names("readyz"))
        routes = [self._route(spec) for spec in specs]
        return app + "".join(routes) + _MAIN.format(app=self.app, os=os_)

    def _route(self, spec: RouteSpec) -> str:
        if spec.batch is not None:
            raise self._error(spec, _UNBATCHED.format(name=spec.name))
        source = _FunctionSource.find(spec)
        func = self.names(spec.name, spec.func)  # the notebook's function, by its own name
        if func != spec.name:
            raise self._error(spec, f"{spec.name}() is not a module-level name the wiring can call")
        out: list[str] = []
        body_params = [p for p in spec.params if p.source == "body"]
        query_params = [p for p in spec.params if p.source == "query" and p.marker is None]
        endpoint_params: list[str] = []
        # In nb2api serve's order (serve/endpoint.py): path, marked, query, body, multipart.
        for p in spec.params:
            if p.source == "path" and p.marker is None:
                annotation = self._annotation(spec, source, p)
                if p.description:
                    Path_ = self.imports.use("fastapi", "Path")
                    marker = f"{Path_}(description={_str(p.description)})"
                    annotation = f"{self.Annotated}[{annotation}, {marker}]"
                endpoint_params.append(f"{p.name}: {annotation}")
        marked = [self._marked(spec, source, p) for p in spec.params if p.marker is not None]
        if marked:
            # Keyword-only, as serve's endpoint: a marked parameter's default may come first.
            endpoint_params = ["*", *endpoint_params, *marked]
        arguments = {p.name: p.name for p in spec.params
                     if p.source == "path" or p.marker is not None}
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

        response_model, encoder, by_media_type = self._response(spec, source, out)
        negotiated = self._negotiated(spec, source, endpoint_params)  # (request, returns)
        if negotiated:
            encoder = f"{self.nbtypes}.answers.negotiable({encoder}, {negotiated[1]})"
        call_args = []
        optional_body = arguments.pop("__optional_body__", None)
        for p in spec.params:
            value = arguments[p.name]
            call_args.append(value if p.positional_only else f"{p.name}={value}")
        if spec.is_async:
            encode = self.names(f"{spec.name}_encode")
            out.append(f"{encode} = {encoder}\n")
            outcome = f"{spec.name}({', '.join(call_args)})"
            encoding = [encode]
        else:
            # Encoded on the worker thread too: a big table or a figure never holds the loop.
            encoded = self.names(f"{spec.name}_encoded")
            out.append(f"{encoded} = {self.nbtypes}.encode_after({spec.name}, {encoder})\n")
            outcome = f"{self.in_thread}({', '.join([encoded, *call_args])})"
            encoding = []
        summary = spec.summary or spec.name.replace("_", " ").title()  # as FastAPI names it
        decorator_args = [
            _str(spec.path), f"name={_str(spec.name)}", f"operation_id={_str(spec.name)}",
            f"summary={_str(summary)}",
        ]
        if spec.description:
            decorator_args.append(f"description={_str(spec.description)}")
        if response_model:
            decorator_args.append(f"response_model={response_model}")
        media = images.media_type(spec.returns)  # the route's, when it answers an image
        errors = f"{self.nbtypes}.error_responses({media!r})" if media else \
            f"{self.nbtypes}.error_responses()"
        if spec.body_model is not None:
            body_errors = f"{self.nbtypes}.body_error_responses({media!r})" if media else \
                f"{self.nbtypes}.body_error_responses()"
            errors = f"{{**{errors}, **{body_errors}}}"
        if negotiated:  # the Arrow and Parquet answers, as serve documents them
            errors = f"{{**{errors}, **{self.nbtypes}.answers.openapi_responses({negotiated[1]})}}"
        if by_media_type:
            decorator_args.append(f"response_class={self.nbtypes}.response_class({by_media_type})")
            decorator_args.append(
                f"responses={{**{errors}, **{self.nbtypes}.openapi_responses({by_media_type})}}"
            )
        else:
            decorator_args.append(f"responses={errors}")
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
        if negotiated:
            strict = answers.declares_table(spec.returns)  # else any result, shown as Jupyter
            lines.append(f"    {self.nbtypes}.answers.answer_for({negotiated[0]}.headers, "
                         f"{strict})")
        if tables:
            lines += [
                f"    files = {{{', '.join(f'{_str(p.name)}: {p.name}' for p in tables)}}}",
                f"    await {self.nbtypes}.receive({self._tables_name(spec)}, files)"
                "  # CSV or Parquet, read into DataFrames",
            ]
        media_type = images.media_type(spec.returns) or "application/json"
        respond_args = [_str(spec.name), outcome, *encoding]
        if media_type != "application/json":
            respond_args.append(f"media_type={_str(media_type)}")
        respond_args += [f"debug={self.debug}", f"logger={self.logger}"]
        lines += [
            f"    return await {self.nbtypes}.respond(",
            *(f"        {arg}," for arg in respond_args),
            "    )",
        ]
        out.append("\n".join(lines) + "\n")
        return "\n\n" + "\n\n".join(out)

    def _negotiated(self, spec: RouteSpec, source, endpoint_params: list[str]
                    ) -> tuple[str, str] | None:
        """For a route that answers tables: the endpoint's request parameter (added first) and
        the return annotation's text, for Arrow and Parquet answers as under serve."""
        if not answers.answers_tables(spec.returns):
            return None
        taken = {p.name for p in spec.params} | {"body", "query"}
        request = "request"
        while request in taken:
            request = "_" + request
        endpoint_params.insert(0, f"{request}: {self.imports.use('fastapi', 'Request')}")
        if spec.returns is inspect.Parameter.empty:
            return request, f"{self.imports.use('inspect', 'Parameter')}.empty"
        return request, self._type_text(spec, source.returns, spec.returns, spec.returns)

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
            if p.marker is not None:
                continue  # a Form() field, written with its marker by _marked
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

    def _marked(self, spec: RouteSpec, source: _FunctionSource, p) -> str:
        """A parameter with a FastAPI marker (``Header()``, ``Form()``, ...), written as the
        notebook wrote it, options and all, so FastAPI reads it as nb2api serve hands it over;
        the docstring's description goes into the marker, as serve puts it there."""
        node = source.params.get(p.name)
        if node is None:
            raise self._error(spec, f"cannot find the annotation of '{p.name}' in the source")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node = ast.parse(node.value.strip(), mode="eval").body
        if p.description and p.marker.description is None:
            described = self._described(node, p.description)
            if described is None:
                self.warnings.append(
                    f"{self.loaded.notebook.path}, {spec.function.cell.ref}: {spec.name}() "
                    f"parameter '{p.name}': the exported /docs leave out its docstring's "
                    "description; give its marker description=... to keep it"
                )
            node = described or node
        text = f"{p.name}: {self._text(node)}"
        if not p.required:
            text += f" = {self._default(spec, source, p)}"
        return text

    def _described(self, node: ast.expr, description: str) -> ast.expr | None:
        """``Annotated[T, Header(...)]`` with ``description=`` added to its FastAPI marker call;
        None when the marker is not written there (an alias of the annotation, say)."""
        if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple)):
            return None
        elements = node.slice.elts
        for index in reversed(range(1, len(elements))):
            element = elements[index]
            if isinstance(element, ast.Call) and self._is_marker(element.func):
                node = copy.deepcopy(node)
                call = node.slice.elts[index]  # type: ignore[attr-defined]
                call.keywords.append(ast.keyword("description", ast.Constant(description)))
                return node
        return None

    def _is_marker(self, func: ast.expr) -> bool:
        try:
            marker = eval(ast.unparse(func), self.namespace)
        except Exception:
            return False
        if isinstance(marker, type):  # fastapi.params.Header, ...
            return issubclass(marker, (fastapi_params.Param, fastapi_params.Form)) and not (
                issubclass(marker, fastapi_params.File))
        return any(marker is getattr(fastapi, name) for name in _MARKERS)  # fastapi.Header, ...

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

    def _response(self, spec: RouteSpec, source, out: list[str]) -> tuple[str | None, str, str]:
        """``response_model=`` text, the route's encoder (``nbtypes.make_encoder`` of the return
        annotation, as under serve) and, for a route documented by media types (an image, a
        ``Response``, a class Jupyter displays), its return annotation."""
        returns = spec.returns
        if returns is inspect.Parameter.empty:
            # What make_encoder gives without an annotation; documented as serve documents it.
            empty = f"{self.imports.use('inspect', 'Parameter')}.empty"
            return None, f"{self.nbtypes}.dumps", empty
        text = self._type_text(spec, source.returns, returns, returns)
        encoder = f"{self.nbtypes}.make_encoder({text})"
        if datatypes.response_type(returns) is None:
            return None, encoder, text  # documented by its media types, not a schema
        model = spec.response_model
        if model is None:
            return None, encoder, ""
        if datatypes.response_type(returns) is not returns:
            text = f"{self.nbtypes}.response_type({text})"
        documented = datatypes.response_type(returns)
        if datatypes.nullable_floats(documented) is not documented:
            text = f"{self.nbtypes}.nullable_floats({text})"
        if isinstance(model, type) and model.__module__ == "nb2api.routes":
            class_name = self.names(model.__name__)
            RootModel = self.imports.use("pydantic", "RootModel")
            lines = [f"class {model.__name__}({RootModel}[{text}]):", "    pass"]
            out.append(_scoped(self.names, class_name, model.__name__, "\n".join(lines) + "\n"))
            return class_name, encoder, ""
        return text, encoder, ""

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


# What follows the cells: settings from the environment and the app. Declarations only; the
# behaviour of every route is nbtypes' (see _Wiring._route).
_APP = '''
{logger} = {logging}.getLogger("app")
{debug} = {os}.environ.get("DEBUG", "") not in ("", "0", "false")  # tracebacks in 500 responses
# Plain `def` functions run on at most MAX_WORKERS threads at a time, so a slow one never blocks
# the event loop.
{threads} = {CapacityLimiter}(
    int({os}.environ.get("MAX_WORKERS", 0)) or min(32, ({os}.cpu_count() or 1) + 4)
)


async def {in_thread}(func, /, *args, **kwargs):
    return await {run_sync}({functools}.partial(func, *args, **kwargs), limiter={threads})


{app} = {FastAPI}(
    title={title},
    description="Exported by nb2api from the notebook `{notebook}`.",{docs_urls}
    exception_handlers={nbtypes}.exception_handlers(),
)
{nbtypes}.document_answered_floats({app})  # NaN answered as null: the document says so
'''

# FastAPI's recipe for docs without a CDN, with the files nb2api serve uses, at the same URLs
# (serve/docs.py), so that /docs is the same page.
_DOCS = '''
{app}.mount(
    "{assets}",
    {StaticFiles}(directory={os}.path.join({os}.path.dirname(__file__), "static")),
    name="nb2api-static",
)


@{app}.get("/docs", include_in_schema=False)
async def {swagger_ui}(request: {Request}) -> {HTMLResponse}:
    root = request.scope.get("root_path", "")
    return {get_swagger_ui_html}(
        openapi_url=root + {app}.openapi_url,
        title={app}.title + " - docs",
        swagger_js_url=root + "{assets}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=root + "{assets}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=root + "{assets}/swagger-ui/favicon-32x32.png",
    )


@{app}.get("/redoc", include_in_schema=False)
async def {redoc}(request: {Request}) -> {HTMLResponse}:
    root = request.scope.get("root_path", "")
    return {get_redoc_html}(
        openapi_url=root + {app}.openapi_url,
        title={app}.title + " - ReDoc",
        redoc_js_url=root + "{assets}/redoc/redoc.standalone.js",
        redoc_favicon_url=root + "{assets}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
'''

_HEALTH = '''

@{app}.get("/healthz", include_in_schema=False)
async def {healthz}() -> dict[str, str]:
    return {{"status": "ok"}}


@{app}.get("/readyz", include_in_schema=False)
async def {readyz}() -> dict[str, str]:
    return {{"status": "ready"}}  # this module ran every cell: ready for traffic


# /metrics (Prometheus) and, with API_TOKEN set, a bearer token on the routes (nbops.py).
_nb2api_ops.install({app}, load_seconds=_nb2api_time.perf_counter() - _nb2api_started)
'''

_MAIN = '''

if _nb2api_script:
    import uvicorn

    host, port = {os}.environ.get("HOST", "127.0.0.1"), int({os}.environ.get("PORT", "8000"))
    uvicorn.run({app}, host=host, port=port)
'''



# ---- several notebooks: one project, each notebook's export in its folder, one app for all ----

_COMBINED = Path(__file__).parent / "serve" / "combined.py"  # vendored as nbcombined.py
_COMBINED_MODULE = "nbcombined"


def export_notebooks(notebooks: list[tuple[str, Path]], folder: str | Path, *,
                     overwrite: bool = False) -> ExportedProject:
    """Write one project serving several notebooks, each under ``/<name>``, as ``nb2api serve``
    does with several: each notebook's own export in ``<folder>/<name>/`` (runnable alone too),
    and a top-level ``app.py`` that mounts them all, with one ``/docs`` and ``/openapi.json``
    combining theirs (:mod:`nb2api.serve.combined`, vendored as ``nbcombined.py``).

    ``notebooks`` are ``(name, path)`` pairs. Every notebook is loaded before anything is
    written, so a broken one leaves no half-written project."""
    folder = Path(folder)
    loaded = [(name, load_notebook(path)) for name, path in notebooks]
    top = ["app.py", f"{_COMBINED_MODULE}.py", "requirements.txt", "Dockerfile", ".dockerignore",
           "README.md"]
    existing = [name for name in top + [n for n, _ in notebooks] if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{folder} already holds {', '.join(existing[:3])}"
                              f"{' and more' if len(existing) > 3 else ''}; choose an empty "
                              "folder or overwrite")
    projects = [(name, export_notebook(notebook, folder / name, overwrite=overwrite))
                for name, notebook in loaded]
    requirements = list(dict.fromkeys(r for _, p in projects for r in p.requirements))
    listing = "".join(f"- `/{name}`: `{nb.notebook.path.name}`, in `{name}/`\n"
                      for name, nb in loaded)
    contents = {
        "app.py": _SEVERAL_APP.format(
            count=len(projects), version=__version__,
            names=", ".join(f"/{name}" for name, _ in projects),
            notebooks={name: p.app_name for name, p in projects},
            docs=_SEVERAL_DOCS.format(first=projects[0][0], assets=ASSETS_PATH)
            if has_local_assets() else "",
            docs_url="None" if has_local_assets() else '"/docs"',
        ),
        f"{_COMBINED_MODULE}.py": _COMBINED.read_text(encoding="utf-8"),
        "requirements.txt": "".join(f"{r}\n" for r in requirements),
        "Dockerfile": _template("Dockerfile").format(
            python=f"{sys.version_info.major}.{sys.version_info.minor}", app="app"),
        ".dockerignore": _template("dockerignore"),
        "README.md": f"# {len(projects)} notebooks, one API\n\nExported by nb2api {__version__}. "
        "Each notebook is served under its own prefix, with its own `/<name>/docs`; `/docs` "
        f"shows them all.\n\n{listing}\nRun it:\n\n    pip install -r requirements.txt\n"
        "    uvicorn app:app --host 127.0.0.1 --port 8000\n\nor build the container: "
        "`docker build -t my-api .`. Each folder is also a project of its own.\n",
    }
    files = []
    for name, text in contents.items():
        (folder / name).write_text(text, encoding="utf-8")
        files.append(folder / name)
    files += [f for _, p in projects for f in p.files]
    warnings = [f"/{name}: {w}" for name, p in projects for w in p.warnings]
    return ExportedProject(folder, tuple(files), tuple(requirements), "app", tuple(warnings))


_SEVERAL_APP = '''"""{count} notebooks exported by nb2api {version}: {names}.

Each folder holds one notebook's own export (runnable alone as well). This app serves them all in
one process, each under /<name> with its own /<name>/docs, and /docs for all of them. Run it with

    uvicorn app:app --host 127.0.0.1 --port 8000
"""

import contextlib
import importlib.util
import os
import sys

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

import nbcombined

HERE = os.path.dirname(os.path.abspath(__file__))
# prefix -> the name of the FastAPI app in <prefix>/app.py
NOTEBOOKS = {notebooks!r}


def _notebook_app(prefix, name):
    folder = os.path.join(HERE, prefix)
    sys.path.insert(0, folder)  # its nbtypes and nbkernel (the same files in every folder)
    spec = importlib.util.spec_from_file_location(f"app_{{prefix}}", os.path.join(folder, "app.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # the notebook's cells run here, from its folder
    return getattr(module, name)


apps = {{prefix: _notebook_app(prefix, name) for prefix, name in NOTEBOOKS.items()}}


@contextlib.asynccontextmanager
async def lifespan(_):
    # A mounted app's lifespan does not run by itself: each notebook's runs here.
    async with contextlib.AsyncExitStack() as stack:
        for notebook_app in apps.values():
            await stack.enter_async_context(notebook_app.router.lifespan_context(notebook_app))
        yield


app = FastAPI(title="{count} notebooks", lifespan=lifespan, docs_url={docs_url}, redoc_url=None)
for prefix, notebook_app in apps.items():
    app.mount("/" + prefix, notebook_app)


def openapi():
    """Every notebook's document under its prefix, one tag per notebook."""
    if app.openapi_schema is None:
        app.openapi_schema = nbcombined.combine(
            {{prefix: notebook_app.openapi() for prefix, notebook_app in apps.items()}},
            {{"title": app.title, "version": app.version}},
            {{prefix: f"its own docs at [{{prefix}}/docs]({{prefix}}/docs)" for prefix in apps}},
        )
    return app.openapi_schema


app.openapi = openapi


@app.get("/healthz", include_in_schema=False)
async def healthz():
    return {{"status": "ok"}}


@app.get("/readyz", include_in_schema=False)
async def readyz():
    return {{"status": "ready", "notebooks": sorted(apps)}}
{docs}'''

_SEVERAL_DOCS = '''

@app.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    assets = root + "/{first}{assets}"  # the files behind every notebook's own /docs
    return get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=app.title + " - docs",
        swagger_js_url=assets + "/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=assets + "/swagger-ui/swagger-ui.css",
        swagger_favicon_url=assets + "/swagger-ui/favicon-32x32.png",
    )
'''
