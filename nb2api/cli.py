"""The ``nb2api`` command: a thin edge over the library.

Library errors become one line on stderr and exit code 2 here, and nowhere else does nb2api print.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from .errors import NotebookError
from .load import Cell
from .serve.logs import LogFormat, default_format, logging_config
from .serve.metrics import MULTIPROC_ENV
from .settings import ServerOptions, Settings, env_var

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(
    name="nb2api",
    help="Serve the marked cells of a Jupyter notebook as a typed, async FastAPI app.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Hand the notebook and its settings to uvicorn's worker processes.
_ENV_NOTEBOOK = "NB2API_SERVE_NOTEBOOK"
_ENV_SETTINGS = "NB2API_SERVE_SETTINGS"

def _notebook_arg(help_text: str) -> Any:
    return Annotated[Path, typer.Argument(help=help_text, show_default=False)]


NotebookArg = Annotated[list[Path], typer.Argument(
    help="The notebook (.ipynb) to serve; or several, each under /NAME: files, NAME=PATH, "
    "folders (their notebooks that have marked cells).", show_default=False)]
CheckedNotebookArg = _notebook_arg("The notebook (.ipynb) to load and check.")
DocumentedNotebookArg = _notebook_arg("The notebook (.ipynb) whose OpenAPI document to write.")
ExportedNotebookArg = _notebook_arg("The notebook (.ipynb) to export.")
DeployedNotebookArg = _notebook_arg("The notebook (.ipynb) to deploy on Ray Serve.")
TestedNotebookArg = _notebook_arg("The notebook (.ipynb) whose examples to replay.")
ToolsNotebookArg = _notebook_arg("The notebook (.ipynb) whose functions to serve as MCP tools.")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _show_version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"nb2api {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True,
                           help="Print nb2api's version and exit.")
    ] = False,
) -> None:
    """Serve the marked cells of a Jupyter notebook as a typed, async FastAPI app."""


def _fail(error: NotebookError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def _progress(quiet: bool, log_format: LogFormat = "text"):
    """Say which cell runs, and every few seconds that a slow one (a model load) still does."""
    still = _StillRunning()

    def say(text: str, cell: Cell, seconds: float | None) -> None:
        if log_format == "json":
            logging.getLogger("nb2api").info(
                text.strip(), extra={"cell": cell.index, "kind": cell.kind,
                                     "first_line": cell.ref.first_line, "seconds": seconds}
            )
        else:
            typer.echo(text, err=True)

    def report(cell: Cell, seconds: float | None) -> None:
        if quiet:
            return
        line = cell.ref.first_line
        line = line if len(line) <= 50 else line[:47] + "..."
        if seconds is None:
            say(f"  running cell {cell.index:<3} {line}", cell, None)
            still.start(lambda s: say(f"          still running cell {cell.index} ({s:.0f} s)",
                                      cell, s))
        else:
            still.stop()
            say(f"  done    cell {cell.index:<3} {seconds:6.2f} s", cell, seconds)

    report.stop = still.stop  # type: ignore[attr-defined]  # after a cell that raised
    return report


class _StillRunning:
    """Calls ``say(seconds)`` every ``every`` seconds until stopped, from a daemon thread."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._stop: threading.Event | None = None

    def start(self, say) -> None:
        self.stop()
        stop = self._stop = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while not stop.wait(self.every):
                say(time.monotonic() - started)

        threading.Thread(target=tick, name="nb2api-progress", daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None


def _configure_logging(level: str, log_format: LogFormat = "text") -> None:
    if log_format == "json":
        logging.config.dictConfig(logging_config("json", level))
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowerLevelFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class _LowerLevelFormatter(logging.Formatter):
    """``warning: ...``, as the CLI's own ``error:`` and ``warning:`` lines read."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return self._style.format(record).replace(record.levelname, record.levelname.lower(), 1)


def with_settings(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` one option per field of :class:`Settings` and :class:`ServerOptions`.

    The command declares ``settings: Settings`` and ``server: ServerOptions``; typer sees, in their
    place, a ``--flag`` per field, named, described and defaulted by the field's declaration. A
    flag left out is taken from its ``NB2API_*`` variable, else the default (pydantic-settings);
    every value is validated by the same model, whatever its source.
    """
    signature = inspect.signature(command)
    models = {name: model for name, model in (("settings", Settings), ("server", ServerOptions))
              if name in signature.parameters}
    # The annotations are strings here (postponed); resolved, typer sees each Option's help.
    hints = typing.get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in signature.parameters.values() if p.name not in models]
    generated = [option for model in models.values() for option in settings_options(model)]

    @functools.wraps(command)
    def run(**values: Any) -> None:
        for parameter, model in models.items():
            given = {name: values.pop(name) for name in model.model_fields}
            try:
                values[parameter] = model(**{k: v for k, v in given.items() if v is not None})
            except ValidationError as error:
                typer.echo(f"error: {_validation_message(error)}", err=True)
                raise typer.Exit(2) from None
        command(**values)

    arguments = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keywords = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=arguments + generated + keywords
    )
    return run


def settings_options(model: type[BaseSettings]) -> list[inspect.Parameter]:
    """A typer option per field of ``model``: ``--max-workers`` for ``max_workers``, help text
    from its description, a note of its environment variable and default."""
    options = []
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        shown = _shown_default(name, field.default)
        default = f" \\[default: {shown}]" if shown else ""
        help_text = f"{field.description}{default} \\[env: {env_var(name)}]"
        kind = _cli_type(field.annotation)
        names = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag, *_ALIASES.get(name, ()))
        option = typer.Option(*names, help=help_text, show_default=False,
                              metavar=None if kind is bool else _metavar(name, field.annotation))
        options.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation=Annotated[kind | None, option]))
    return options


# Flags kept from before the settings were declared in one place.
_ALIASES = {"cors_origins": ("--cors-origin",)}


def _shown_default(name: str, default: Any) -> str:
    if default in (None, "", ()):
        return ""
    if name == "max_body_size":
        return f"{default // 1024**2}MiB"
    if isinstance(default, bool):
        return f"--{'' if default else 'no-'}{name.replace('_', '-')}"
    return str(default)


def _metavar(name: str, annotation: Any) -> str:
    if name == "max_body_size":
        return "SIZE"
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0]
    if get_origin(base) is Annotated or get_origin(base) is tuple:
        return "TEXT"
    if get_origin(base) is Literal:
        return "|".join(map(str, get_args(base)))
    return {int: "INT", float: "SECONDS" if name == "timeout" else "FLOAT",
            Path: "PATH"}.get(base, "TEXT")


def _cli_type(annotation: Any) -> Any:
    """What the command line reads for a field: flags for bools, a repeatable option for a
    tuple, text for the rest (pydantic converts and checks it, as it does the variables)."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    base = get_args(args[0])[0] if get_origin(args[0]) is Annotated else args[0]
    if base is bool:
        return bool
    if get_origin(base) is tuple:
        return list[str]
    return str


def _validation_message(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.errors()[0]["loc"])
    flag = f"--{where.replace('_', '-')}: " if where else ""
    return flag + _first_message(error)


def _first_message(error: ValidationError) -> str:
    """The first error's text, without pydantic's "Value error, " in front of our own."""
    return error.errors()[0]["msg"].removeprefix("Value error, ")


def _write_or_print(text: str, output: Path | None, then: str = "") -> None:
    """``text`` on stdout, or in ``output`` with a line on stderr saying so (and ``then``)."""
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"nb2api: wrote {output}{then}", err=True)


def _load(notebook: Path, settings: Settings | None = None, quiet: bool = True,
          log_format: LogFormat = "text") -> FastAPI:
    # An app to serve gets /mcp (unless --no-mcp); one to inspect (check, openapi) needs none.
    if settings is not None and settings.mcp:
        from .mcp import create_app
    else:
        from .serve import create_app

    try:
        return create_app(notebook, settings, progress=_progress(quiet, log_format))
    except NotebookError as error:
        raise _fail(error) from None
    except ValidationError as error:  # an NB2API_* variable, read by create_app
        variable = env_var(str(error.errors()[0]["loc"][0]))
        typer.echo(f"error: {variable}: {_first_message(error)}", err=True)
        raise typer.Exit(2) from None


@app.command()
@with_settings
def serve(
    notebook: NotebookArg,
    *,
    settings: Settings,
    server: ServerOptions,
    ray: Annotated[
        bool,
        typer.Option("--ray", help="Serve on Ray Serve: a local Ray cluster, or --address's."),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(envvar="NB2API_RAY_ADDRESS", help="The Ray cluster to join, e.g. 'auto' "
                     "(implies --ray).", show_default=False),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(min=1, help="With --ray: a fixed number of replicas (default: 1).",
                     show_default=False),
    ] = None,
    min_replicas: Annotated[
        int | None,
        typer.Option(min=0, help="With --ray: autoscale from this many replicas.",
                     show_default=False),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(min=1, help="With --ray: autoscale up to this many replicas.",
                     show_default=False),
    ] = None,
) -> None:
    """Serve NOTEBOOK's marked cells as an HTTP API (docs at /docs)."""
    import uvicorn

    if not (ray or address):  # Ray's replicas read NB2API_TOKEN where they run
        _forget_token_variable()
    fmt: LogFormat = server.log_format or default_format()
    _configure_logging(server.log_level, fmt)
    if _several(notebook):
        if ray or address:  # one Serve application per notebook, under /NAME, one proxy
            _serve_on_ray(_ray_targets(notebook), settings, server, fmt, address=address,
                          replicas=replicas, min_replicas=min_replicas,
                          max_replicas=max_replicas)
            return
        _serve_several(notebook, settings, server, fmt)
        return
    notebook = notebook[0]
    _say(fmt, f"nb2api: loading {notebook.name}")
    application = _load(notebook, settings, quiet=False, log_format=fmt)  # errors: path as given
    notebook = notebook.resolve()  # worker processes and Ray replicas may start elsewhere
    routes = application.state.routes
    if ray or address:
        del application
        _serve_on_ray(notebook, settings, server, fmt, address=address, replicas=replicas,
                      min_replicas=min_replicas, max_replicas=max_replicas)
        return
    where = (f"unix socket {server.uds}" if server.uds
             else f"http://{server.host}:{server.port}{settings.root_path}")
    _say(fmt, f"nb2api: {_plural(len(routes), 'route')} ready; docs at {where}/docs")
    os.chdir(notebook.parent)  # requests see the notebook's folder as Jupyter would
    common = _uvicorn_options(settings, server, fmt)
    if server.reload:
        # One process that loads each save itself and swaps the app only when it loads.
        from .serve.reload import ReloadingApp

        def load(path: Path) -> FastAPI:
            from .mcp import create_app

            return create_app(path, settings)

        uvicorn.run(ReloadingApp(application, notebook, load), **common)
        return
    if server.workers == 1:
        _freeze_startup_objects()
        _exit_0_after_sigterm()
        uvicorn.run(application, **common)
        return
    # Several processes: each builds its own app from the settings.
    del application
    os.environ[_ENV_NOTEBOOK] = str(notebook)
    with _secrets_for_workers(settings) as worker_settings, \
            _multiprocess_metrics(settings.metrics):
        os.environ[_ENV_SETTINGS] = worker_settings.model_dump_json()
        uvicorn.run("nb2api.cli:app_from_environment", factory=True, workers=server.workers,
                    **common)


def _uvicorn_options(settings: Settings, server: ServerOptions, fmt: LogFormat) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "uds": server.uds,
        "root_path": settings.root_path,
        "log_level": server.log_level,
        "log_config": logging_config(fmt, server.log_level),
        "access_log": False,  # nb2api writes its own request lines, with the request id
        "proxy_headers": True,
        "timeout_graceful_shutdown": 10,
    }


def _forget_token_variable() -> None:
    """Settings have read NB2API_TOKEN: drop it, so that neither the notebook's code nor the
    processes it or the server starts (``!`` lines, ``subprocess``, workers) can read it."""
    os.environ.pop(env_var("token"), None)
    os.environ.pop(env_var("webhook_secret"), None)


# Each secret setting, the setting of a file to read it from instead, and a name for that file.
_SECRETS = (("token", "token_file", "nb2api-token-"),
            ("webhook_secret", "webhook_secret_file", "nb2api-webhook-"))


@contextlib.contextmanager
def _secrets_for_workers(settings: Settings) -> Iterator[Settings]:
    """``settings`` for worker processes, which read them from their environment, where a
    secret must not be: a secret given inline goes to them in a private file (mode 0600,
    removed at the end), one given as a file as its absolute path."""
    with contextlib.ExitStack() as files:
        for secret, file_setting, prefix in _SECRETS:
            settings = files.enter_context(_in_a_file(settings, secret, file_setting, prefix))
        yield settings


@contextlib.contextmanager
def _in_a_file(settings: Settings, secret: str, file_setting: str,
               prefix: str) -> Iterator[Settings]:
    given: Path | None = getattr(settings, file_setting)
    if given is not None:
        yield settings.updated(**{file_setting: given.resolve()})
        return
    value: str | None = getattr(settings, secret)
    if value is None:
        yield settings
        return
    descriptor, name = tempfile.mkstemp(prefix=prefix)  # mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(value)
        yield settings.updated(**{secret: None, file_setting: Path(name)})
    finally:
        Path(name).unlink(missing_ok=True)


def _exit_0_after_sigterm() -> None:
    """After its graceful shutdown, uvicorn raises the signal that stopped it again, for the
    handler it found: this one makes a SIGTERM stop exit 0, as it does under --workers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _say(log_format: LogFormat, text: str) -> None:
    if log_format == "json":
        logging.getLogger("nb2api").info(text)
    else:
        typer.echo(text, err=True)


@contextlib.contextmanager
def _multiprocess_metrics(enabled: bool) -> Iterator[None]:
    """Prometheus multiprocess mode for the worker processes: a fresh folder for their values,
    removed at the end, unless PROMETHEUS_MULTIPROC_DIR already names one."""
    if not enabled or os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="nb2api-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _freeze_startup_objects() -> None:
    """Move what start-up made (modules, models, the notebook's data) out of the collector's way.

    Collections otherwise keep rescanning those long-lived objects while requests wait. Only the
    young generations are collected first: a full collection here cost 40-55 ms of start-up and
    found nothing to free (bench and quickstart notebooks); what the setup cells leave as garbage
    is young, and older garbage, if any, stays frozen once.
    """
    import gc

    gc.collect(1)
    gc.freeze()


def app_from_environment():
    """The app factory that uvicorn calls in each worker process of ``serve``."""
    settings = Settings.model_validate_json(os.environ[_ENV_SETTINGS])
    notebook = os.environ[_ENV_NOTEBOOK]
    try:
        from .mcp import create_app

        application = create_app(notebook, settings)
    except NotebookError as error:  # the file changed since the parent loaded it
        logging.getLogger("nb2api").error("%s", error)
        raise SystemExit(2) from None
    _freeze_startup_objects()
    return application


@app.command("mcp")
@with_settings
def mcp_stdio(notebook: ToolsNotebookArg, *, settings: Settings) -> None:
    """Serve NOTEBOOK's functions as MCP tools over stdio, for agents that start a local process
    (only protocol messages go to stdout; what cells print goes to stderr)."""
    from .mcp.stdio import divert_stdout, serve_stdio

    protocol = divert_stdout()
    _forget_token_variable()  # no HTTP here: the notebook's code has no use for it
    _configure_logging("warning")
    application = _load(notebook, settings.updated(mcp=False))  # no /mcp: stdio is the transport
    os.chdir(notebook.resolve().parent)  # calls see the notebook's folder, as Jupyter would
    serve_stdio(application, protocol)


@app.command()
def check(notebook: CheckedNotebookArg) -> None:
    """Load NOTEBOOK (running its setup cells) and list the routes it would serve."""
    _configure_logging("warning")
    application = _load(notebook)
    if hasattr(application.state, "notebooks"):  # a folder: each notebook, by its prefix
        for name, serving in sorted(application.state.notebooks.live.items()):
            _list_routes(f"/{name} ({serving.app.state.notebook.notebook.path})", serving.app)
        return
    _list_routes(str(notebook), application)


def _list_routes(notebook: str, application: FastAPI) -> None:
    loaded = application.state.notebook
    routes = application.state.routes
    typer.echo(
        f"{notebook}: {_plural(len(routes), 'route')}, "
        f"{_plural(len(loaded.notebook.cells), 'marked cell')} run in "
        f"{loaded.load_seconds:.2f} s"
    )
    width = max((len(r.method) + len(r.path) for r in routes), default=0) + 2
    for route in routes:
        target = f"{route.method} {route.path}"
        where = f"cell {route.function.cell.index}, line {route.function.line}"
        typer.echo(f"  {target:<{width}} {route.signature()}   [{where}]")
        if route.batch is not None:
            typer.echo(f"  {'':<{width}} {route.batch.describe()}")


@app.command()
def openapi(
    notebook: DocumentedNotebookArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the JSON here (default: print it).",
                     show_default=False),
    ] = None,
) -> None:
    """Print NOTEBOOK's OpenAPI document as JSON (only the JSON goes to stdout)."""
    _configure_logging("error")
    with contextlib.redirect_stdout(sys.stderr):  # what the cells print is not the document
        application = _load(notebook)
        document = json.dumps(application.openapi(), indent=2)
    _write_or_print(document + "\n", output)


def _serve_on_ray(notebook: Path | list[tuple[str, Path]], settings: Settings,
                  server: ServerOptions, fmt: LogFormat,
                  *, address: str | None, replicas: int | None, min_replicas: int | None,
                  max_replicas: int | None) -> None:
    """Deploy ``notebook`` at the prefix, or each ``(name, path)`` of several at prefix/name."""
    import importlib.util

    from pydantic import ValidationError

    from . import ray as nb2api_ray

    host, port = server.host, server.port
    if server.uds or server.reload or server.workers != 1:
        raise typer.BadParameter("--ray runs replicas itself: drop --uds, --reload and --workers")
    if importlib.util.find_spec("ray") is None:
        typer.echo("error: --ray needs Ray Serve: pip install 'nb2api[ray]'", err=True)
        raise typer.Exit(2)
    # Serve's proxy puts the app under the prefix, so replicas serve it at their root.
    prefix = settings.root_path or "/"
    several = not isinstance(notebook, Path)
    notebooks = notebook if not isinstance(notebook, Path) else [("", notebook)]
    try:
        deployments = [(name, nb2api_ray.RayArgs(
            notebook=path,
            name=name or None,
            num_replicas=replicas,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            settings=settings.updated(root_path=""),
        )) for name, path in notebooks]
    except ValidationError as error:
        raise typer.BadParameter(_first_message(error)) from None
    _say(fmt, f"nb2api: starting Ray Serve ({'joining ' + address if address else 'local'})")
    # Ctrl-C or SIGTERM (local_cluster turns it into KeyboardInterrupt), at any point: Ray and
    # its session folder are shut down on the way out, and the exit is a clean one.
    with contextlib.suppress(KeyboardInterrupt), \
            nb2api_ray.local_cluster(address=address, host=host, port=port):
        seconds = 0.0
        for name, args in deployments:
            try:
                seconds += nb2api_ray.run(args, app_name=name or None,
                                          route_prefix=f"{prefix.rstrip('/')}/{name}"
                                          if name else prefix)
            except NotebookError as error:
                raise _fail(error) from None
            except RuntimeError as error:  # a replica failed to start: its log says why
                typer.echo(f"error: Ray Serve could not deploy {args.notebook.name}: {error}",
                           err=True)
                raise typer.Exit(2) from None
        where = f"http://{host}:{port}{prefix.rstrip('/')}"
        docs = (", ".join(f"{where}/{name}/docs" for name, _ in deployments) if several
                else f"{where}/docs")
        _say(fmt, f"nb2api: deployed on Ray Serve in {seconds:.1f} s; docs at {docs}")
        while True:
            time.sleep(3600)
    _say(fmt, "nb2api: Ray Serve stopped")


@app.command()
def export(
    notebook: ExportedNotebookArg,
    outdir: Annotated[
        Path, typer.Argument(help="Folder for the project (created if missing).",
                             show_default=False)
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the files of an earlier export.")
    ] = False,
    k8s: Annotated[
        bool, typer.Option("--k8s", help="Also write Kubernetes manifests in k8s/: Deployment, "
                           "Service, HorizontalPodAutoscaler, PodDisruptionBudget.")
    ] = False,
    more: Annotated[list[Path] | None, typer.Argument(hidden=True, show_default=False)] = None,
) -> None:
    """Write NOTEBOOK as a standalone FastAPI project: app.py, requirements.txt, Dockerfile.

    Several (files, NAME=PATH, a folder; OUTDIR last) make one project serving each under
    /NAME, as 'nb2api serve' does."""
    from .export import export_notebook, export_notebooks

    _configure_logging("error")
    try:
        if more or notebook.is_dir() or _several([notebook]):
            if k8s:
                raise typer.BadParameter(
                    "--k8s writes the manifests of one notebook's project; export each "
                    "notebook on its own with --k8s", param_hint="'--k8s'")
            *several, outdir = [notebook, outdir, *(more or [])]
            targets = _export_targets(several)
            project = export_notebooks(targets, outdir, overwrite=force)
        else:
            project = export_notebook(notebook, outdir, overwrite=force, k8s=k8s)
    except NotebookError as error:
        raise _fail(error) from None
    except FileExistsError as error:
        typer.echo(f"error: {error} (--force)", err=True)
        raise typer.Exit(2) from None
    for warning in project.warnings:
        typer.echo(f"warning: {warning}", err=True)
    written = dict.fromkeys(  # nbtypes/ once, not each of its modules
        "/".join(p.relative_to(project.folder).parts[:1]) + ("/" if p.parent != project.folder
                                                              else "")
        for p in project.files
    )
    typer.echo(f"nb2api: wrote {', '.join(written)} in {outdir}")
    typer.echo(f"  run it: cd {outdir} && pip install -r requirements.txt && "
               f"uvicorn app:{project.app_name}")
    if k8s:
        typer.echo(f"  deploy it: docker build, then kubectl apply -f {outdir}/k8s/ "
                   "(the README says how)")


@app.command("test")
def contract_test(
    notebook: TestedNotebookArg,
    rtol: Annotated[float, typer.Option(min=0, help="Relative tolerance for floats.")] = 1e-9,
    against_saved: Annotated[
        bool, typer.Option("--against-saved",
                           help="Also compare with the outputs saved in the notebook.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option(help="Write JUnit XML here, for CI.", show_default=False)
    ] = None,
) -> None:
    """Replay NOTEBOOK's example cells through its API and compare with the direct calls."""
    from .contract import junit_xml, run_contract

    _configure_logging("warning")
    try:
        report = run_contract(notebook, rtol=rtol, against_saved=against_saved)
    except NotebookError as error:
        raise _fail(error) from None
    except ValidationError as error:  # an NB2API_* variable
        variable = env_var(str(error.errors()[0]["loc"][0]))
        typer.echo(f"error: {variable}: {_first_message(error)}", err=True)
        raise typer.Exit(2) from None
    if not report.outcomes:
        typer.echo(f"warning: {notebook.name} has no examples: mark a cell of calls 'example'",
                   err=True)
    for line in report.lines():
        typer.echo(line)
    typer.echo(report.summary())
    if junit is not None:
        _write_or_print(junit_xml(report), junit)
    raise typer.Exit(report.exit_code)


@app.command("ray-config")
def ray_config(
    notebook: DeployedNotebookArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the YAML here (default: print it).",
                     show_default=False),
    ] = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="A fixed number of replicas.",
                                                 show_default=False)] = None,
    min_replicas: Annotated[int | None, typer.Option(min=0, help="Autoscaling: fewest.",
                                                     show_default=False)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1, help="Autoscaling: most.",
                                                     show_default=False)] = None,
    num_cpus: Annotated[float, typer.Option(min=0.01, help="CPUs per replica.")] = 1.0,
    route_prefix: Annotated[str, typer.Option(help="Serve the API under this path.")] = "/",
    host: Annotated[str, typer.Option(help="Address Serve's proxies bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port Serve's proxies bind.")] = 8000,
) -> None:
    """Write a Ray Serve config for NOTEBOOK, for 'serve deploy' on a Ray cluster."""
    from pydantic import ValidationError

    from .load import read_notebook
    from .ray import RayArgs, config_text

    try:
        read_notebook(notebook)
        args = RayArgs(notebook=notebook.resolve(), num_replicas=replicas,
                       min_replicas=min_replicas, max_replicas=max_replicas, num_cpus=num_cpus)
    except NotebookError as error:
        raise _fail(error) from None
    except ValidationError as error:
        raise typer.BadParameter(_first_message(error)) from None
    text = config_text(args, route_prefix=route_prefix, host=host, port=port)
    _write_or_print(text, output, then=f"; deploy it with: serve deploy {output}")


def main() -> None:
    app()


# ---- several notebooks in one server (nb2api serve folder/, a.ipynb b.ipynb, NAME=PATH) ----

_ENV_NOTEBOOKS = "NB2API_SERVE_NOTEBOOKS"


def _several(arguments: list[Path]) -> bool:
    """Anything but one notebook file named without a prefix: served under prefixes."""
    if len(arguments) != 1:
        return True
    argument = arguments[0]
    return argument.is_dir() or ("=" in str(argument) and not argument.exists())


def _serve_several(arguments: list[Path], settings: Settings, server: ServerOptions,
                   fmt: LogFormat) -> None:
    """Serve each notebook under /NAME in one server (see nb2api.serve.multi)."""
    import uvicorn

    from .load import parse_targets
    from .serve import create_app
    from .serve.multi import Notebooks

    try:
        targets = parse_targets([str(argument) for argument in arguments])
    except NotebookError as error:
        raise _fail(error) from None
    for skipped in targets.skipped:
        _say(fmt, f"nb2api: skipped {skipped.path}: {skipped.reason}")

    def load(path: Path, notebook_settings: Settings) -> FastAPI:
        _say(fmt, f"nb2api: loading {path}")
        progress = _progress(False, fmt)
        try:
            return create_app(path, notebook_settings, progress=progress)
        finally:  # a cell that raised (--skip-broken, a reload) is "still running" no more
            progress.stop()

    try:
        application = Notebooks.build(targets, settings, load, reload=server.reload)
    except NotebookError as error:
        raise _fail(error) from None
    if settings.mcp:  # every notebook's tools at /mcp, named <name>_<function>
        from .mcp import mount_mcp

        mount_mcp(application)
    notebooks = application.state.notebooks
    where = (f"unix socket {server.uds}" if server.uds
             else f"http://{server.host}:{server.port}{settings.root_path}")
    served = ", ".join(f"{where}/{name}/ ({_plural(len(s.app.state.routes), 'route')})"
                       for name, s in sorted(notebooks.live.items()))
    _say(fmt, f"nb2api: {_plural(len(notebooks.live), 'notebook')} ready: {served}; "
              f"docs of all at {where}/docs")
    folders = {target.path.resolve().parent for target in targets.notebooks}
    if len(folders) == 1:  # requests see the notebooks' folder as Jupyter would
        os.chdir(folders.pop())
    common = _uvicorn_options(settings, server, fmt)
    if server.reload or server.workers == 1:
        if not server.reload:
            _freeze_startup_objects()
            _exit_0_after_sigterm()
        uvicorn.run(application, **common)
        return
    del application, notebooks
    os.environ[_ENV_NOTEBOOKS] = json.dumps(
        [[target.name, str(target.path.resolve())] for target in targets.notebooks])
    with _secrets_for_workers(settings) as worker_settings, \
            _multiprocess_metrics(settings.metrics):
        os.environ[_ENV_SETTINGS] = worker_settings.model_dump_json()
        uvicorn.run("nb2api.cli:notebooks_from_environment", factory=True,
                    workers=server.workers, **common)


def notebooks_from_environment():
    """The app factory that uvicorn calls in each worker process of ``serve`` with several
    notebooks."""
    from .mcp import create_app

    settings = Settings.model_validate_json(os.environ[_ENV_SETTINGS])
    notebooks = dict(json.loads(os.environ[_ENV_NOTEBOOKS]))
    try:
        application = create_app(notebooks, settings)
    except NotebookError as error:  # a file changed since the parent loaded it
        logging.getLogger("nb2api").error("%s", error)
        raise SystemExit(2) from None
    _freeze_startup_objects()
    return application


def _export_targets(arguments: list[Path]) -> list[tuple[str, Path]]:
    """The notebooks ``nb2api export`` is given, as ``(prefix, path)``; the skipped listed."""
    from .load import parse_targets

    targets = parse_targets([str(argument) for argument in arguments])
    for skipped in targets.skipped:
        typer.echo(f"nb2api: skipped {skipped.path}: {skipped.reason}", err=True)
    if not targets.notebooks:
        raise NotebookError("no notebook to export: none has a cell marked setup or api",
                            path=", ".join(str(a) for a in arguments))
    return [(target.name, target.path) for target in targets.notebooks]


def _ray_targets(arguments: list[Path]) -> list[tuple[str, Path]]:
    """The notebooks ``--ray`` deploys, each as its own application under /NAME."""
    from .load import parse_targets

    try:
        targets = parse_targets([str(argument) for argument in arguments])
    except NotebookError as error:
        raise _fail(error) from None
    for skipped in targets.skipped:
        typer.echo(f"nb2api: skipped {skipped.path}: {skipped.reason}", err=True)
    if not targets.notebooks:
        raise _fail(NotebookError("no notebook to serve: none has a cell marked setup or api"))
    return [(target.name, target.path.resolve()) for target in targets.notebooks]
