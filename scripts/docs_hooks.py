"""MkDocs hooks: the reference pages' tables, generated from the code at build time.

A page asks for a table with a marker line, ``<!-- generated: NAME -->``; the hook puts the table
in its place, so the site cannot drift from the one declaration each table comes from:

- ``settings Settings`` and ``settings ServerOptions``: ``nb2api.settings.markdown_table``, the
  same tables README holds between its ``settings:`` markers;
- ``cli``: every ``nb2api`` command, its arguments and options, from the typer app;
- ``metrics``: every metric ``/metrics`` reports, from ``nb2api.serve.metrics.Metrics``;
- ``reserved-paths``: ``nb2api.routes.RESERVED_PATHS``.

``tests/test_docs.py`` builds the site with ``mkdocs build --strict``; an unknown marker fails the
build.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MARKER = re.compile(r"^<!-- generated: ([\w-]+)(?: (\w+))? -->$", re.MULTILINE)


def settings_table(model: str | None) -> str:
    from nb2api.settings import ServerOptions, Settings, markdown_table

    models = {"Settings": Settings, "ServerOptions": ServerOptions}
    if model not in models:
        raise ValueError(f"settings of {model!r}: expected one of {sorted(models)}")
    return markdown_table(models[model])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


_NOTES = re.compile(r"\s*\\?\[(default|env): ([^\]]*)\]")


def cli_reference(_: str | None = None) -> str:
    """Each command: its summary, its usage, and a table of its arguments and options."""
    import typer

    from nb2api.cli import app
    from nb2api.settings import ServerOptions, Settings

    settings = {*Settings.model_fields, *ServerOptions.model_fields}  # in their own tables
    parts = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        params = [p for p in command.params if p.name != "help"]
        arguments = " ".join(p.name.upper() for p in params if p.param_type_name == "argument")
        parts.append(f"### `nb2api {name}`\n\n{_cell(command.help or '')}\n\n"
                     f"```\nnb2api {name} {arguments} [OPTIONS]\n```\n")
        if any(p.name in settings for p in params):
            params = [p for p in params if p.name not in settings]
            parts.append("Every setting in the two tables above is an option, and:\n")
        rows = ["| argument or option | environment variable | default | what it does |",
                "| --- | --- | --- | --- |"]
        for param in params:
            if param.param_type_name == "argument":
                names = f"`{param.name.upper()}`"
            else:
                names = " / ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
            text = getattr(param, "help", None) or ""
            notes = dict(match.groups() for match in _NOTES.finditer(text))
            envvar = notes.get("env") or getattr(param, "envvar", None) or ""
            default = notes.get("default", "")
            if not default and param.param_type_name == "option" and param.default not in (
                None, False, ()
            ):
                default = str(param.default)
            rows.append(f"| {names} | {f'`{envvar}`' if envvar else ''} | "
                        f"{f'`{default}`' if default else ''} | {_cell(_NOTES.sub('', text))} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def metrics_table(_: str | None = None) -> str:
    """Name, type, labels and help of every metric, from an app's own registry."""
    from prometheus_client.metrics import MetricWrapperBase

    from nb2api.serve.jobs.runner import job_metrics
    from nb2api.serve.metrics import Metrics

    metrics = Metrics()
    if metrics.registry is None:
        raise RuntimeError("unset PROMETHEUS_MULTIPROC_DIR to build the docs")
    # one request, so that the request counter and histogram report their labels
    metrics.request_started()
    metrics.request_finished("/predict", "POST", 200, 0.01)
    jobs = job_metrics(metrics.registry)  # registered by an app's jobs, beside its own
    declared = {m._name: m._labelnames for m in [*vars(metrics).values(), *jobs]
                if isinstance(m, MetricWrapperBase)}
    rows = ["| metric | type | labels | what it counts |", "| --- | --- | --- | --- |"]
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = declared.get(family.name) or [
            label for label in dict.fromkeys(k for sample in family.samples for k in sample.labels)
            if label != "le"
        ]
        shown = ", ".join(f"`{label}`" for label in labels)
        rows.append(f"| `{name}` | {family.type} | {shown} | {_cell(family.documentation)} |")
    return "\n".join(rows) + "\n"


def reserved_paths(_: str | None = None) -> str:
    from nb2api.routes import RESERVED_PATHS

    return "\n".join(f"- `{path}`" for path in RESERVED_PATHS) + "\n"


GENERATORS: dict[str, Callable[[str | None], str]] = {
    "settings": settings_table,
    "cli": cli_reference,
    "metrics": metrics_table,
    "reserved-paths": reserved_paths,
}


def render(markdown: str) -> str:
    """``markdown`` with each marker replaced by its generated table."""

    def generated(match: re.Match[str]) -> str:
        name, argument = match.groups()
        if name not in GENERATORS:
            raise ValueError(f"unknown generated table {name!r}: one of {sorted(GENERATORS)}")
        return GENERATORS[name](argument)

    return MARKER.sub(generated, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except (ValueError, RuntimeError) as error:
        raise PluginError(f"{page.file.src_path}: {error}") from error
