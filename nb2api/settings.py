"""How a notebook is served: every setting declared once.

Each field below is the one declaration of a setting: its name, type, default and help text.
From it come the ``nb2api serve`` flag (``--max-workers``), the environment variable
(``NB2API_MAX_WORKERS``, read by pydantic-settings), the ``create_app`` keyword and the table in
README; ``tests/test_settings.py`` checks that all four agree.

A flag given on the command line wins over the environment variable, which wins over the default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "NB2API_"
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "ki": 1024, "mi": 1024**2,
          "gi": 1024**3}


def parse_size(text: str | int) -> int:
    """``'10MB'`` -> 10_000_000, ``'1MiB'`` -> 1_048_576, ``'512'`` -> 512."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (for example 512, 100kB, 10MB, 1GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def _split_words(value: Any) -> Any:
    """``"a, b c"`` -> ``("a", "b", "c")``: a list in one environment variable or flag."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return tuple(word for item in value for word in str(item).replace(",", " ").split())
    return value


class _Declared(BaseSettings):
    """Settings read from ``NB2API_*`` variables; unknown keywords are refused."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=False
    )

    def updated(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied and validated (unknown names raise TypeError)."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return type(self).model_validate({**self.model_dump(), **changes})


class Settings(_Declared):
    """How a notebook's app behaves: the same under ``nb2api serve``, ``create_app`` and Jupyter."""

    debug: bool = Field(
        False, description="Put tracebacks in 500 responses (never in production)."
    )
    max_workers: int | None = Field(
        None, ge=1,
        description="Threads per process for plain 'def' routes (default: min(32, CPUs + 4)).",
    )
    root_path: str = Field("", description="Prefix the app is proxied under.")
    token: str | None = Field(
        None, repr=False,
        description="Require 'Authorization: Bearer TOKEN' on the notebook's routes and "
        "/metrics.",
    )
    token_file: Path | None = Field(
        None,
        description="Read the token from this file (its content less the final newline): "
        "unlike --token, not shown by ps.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Origins allowed to call from a browser ('*' for any); several separated by "
        "commas or spaces, or the flag repeated.",
    )
    max_body_size: int = Field(
        DEFAULT_MAX_BODY_SIZE, ge=0,
        description="Largest request body in bytes (413 above it), e.g. 512kB, 16MiB; 0 for no "
        "limit.",
    )
    max_upload_rows: int = Field(
        1_000_000, ge=0,
        description="Most rows an uploaded CSV or Parquet table may have (413 above it); it may "
        "decode to 1 KiB per allowed row. 0 for no limit.",
    )
    timeout: float | None = Field(
        None, gt=0, description="Seconds a call may take (504 after) where no '#| timeout:' says."
    )
    max_concurrency: int | None = Field(
        None, ge=1,
        description="Calls of one route at once where no '#| max-concurrency:' says (default: the "
        "pool size for 'def' routes, no limit for 'async def').",
    )
    max_queue: int = Field(
        100, ge=0,
        description="Requests that may wait per route beyond its concurrency; 503 + Retry-After "
        "past that.",
    )
    processes: int | None = Field(
        None, ge=1,
        description="Worker processes per server process for '#| executor: process' routes "
        "(default: CPUs).",
    )
    metrics: bool = Field(True, description="Prometheus metrics at /metrics.")
    access_log: bool = Field(True, description="Log one line per request.")
    fast_path: bool = Field(
        True,
        description="Answer valid JSON requests to body-only routes without FastAPI's "
        "per-request handler (same answers, faster); off to compare or debug.",
    )
    examples: bool = Field(
        True,
        description="Call the example cells' calls at load to show their answers in /docs "
        "(never a function marked '#| example: false'); off: examples show their requests only.",
    )
    examples_budget: float = Field(
        10.0, gt=0, description="Seconds that answering the examples at load may take in all."
    )
    otel: bool = Field(
        False,
        description="Trace requests and start-up with OpenTelemetry, configured by the OTEL_* "
        "variables (also on when OTEL_SERVICE_NAME or OTEL_EXPORTER_OTLP_ENDPOINT is set); "
        "needs nb2api[otel].",
    )
    skip_broken: bool = Field(
        False,
        description="With several notebooks: serve the others when one cannot be served "
        "(/readyz and the log say which and why) instead of refusing to start.",
    )
    jobs_db: Path | None = Field(
        None,
        description="SQLite file of the jobs (Prefer: respond-async), shared by every server "
        "process (default: .nb2api/jobs.db beside the notebook, made on first use).",
    )
    max_jobs: int = Field(
        1000, ge=1, description="Jobs queued or running at once; 503 + Retry-After past that."
    )
    max_result_size: int = Field(
        64 * 1024**2, ge=1,
        description="Largest stored job result in bytes (the job fails above it), e.g. 10MB.",
    )
    job_ttl: float = Field(
        7 * 24 * 3600, gt=0, description="Seconds a finished job and its result are kept."
    )
    webhook_secret: str | None = Field(
        None, repr=False,
        description="Sign webhooks with this secret (Standard Webhooks, HMAC-SHA256; "
        "'whsec_' + base64, or any text).",
    )
    webhook_secret_file: Path | None = Field(
        None,
        description="Read the webhook secret from this file: unlike --webhook-secret, not "
        "shown by ps.",
    )
    webhook_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Hosts a Webhook-URL may name (host or host:port); several separated by "
        "commas or spaces, or the flag repeated. None: webhooks are refused (422).",
    )
    mcp: bool = Field(
        True,
        description="Serve the notebook's functions as MCP tools at /mcp (Streamable HTTP), for "
        "LLM agents.",
    )

    @field_validator("cors_origins", "webhook_allow", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return _split_words(value)

    @field_validator("max_body_size", "max_result_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return None if value is None else checked_token(value)

    @model_validator(mode="after")
    def _one_token(self) -> Settings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give the token or a token file, not both")
        self.bearer_token()  # the file exists and holds a usable token
        if self.webhook_secret is not None and self.webhook_secret_file is not None:
            raise ValueError("give the webhook secret or a webhook secret file, not both")
        self.signing_secret()
        return self

    def signing_secret(self) -> str | None:
        """The webhook secret: ``webhook_secret``, or what ``webhook_secret_file`` holds."""
        if self.webhook_secret_file is None:
            return self.webhook_secret or None
        try:
            text = self.webhook_secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(
                f"cannot read the webhook secret file {self.webhook_secret_file}: {error}"
            ) from None
        if not text:
            raise ValueError(f"the webhook secret file {self.webhook_secret_file} is empty")
        return text

    def bearer_token(self) -> str | None:
        """The token routes require: ``token``, or what ``token_file`` holds (read now)."""
        if self.token_file is None:
            return self.token
        try:
            text = self.token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read the token file {self.token_file}: {error}") from None
        return checked_token(text.removesuffix("\n").removesuffix("\r"),
                             f"the token file {self.token_file}")


def checked_token(token: str, where: str = "the token") -> str:
    """``token`` if it can travel in an ``Authorization`` header: not empty, printable ASCII
    without spaces (RFC 6750's token). Beyond ASCII, clients disagree: some send UTF-8, some
    Latin-1, so such a token would work for some and not others."""
    if not token:
        raise ValueError(f"{where} is empty: give a token, or leave the setting out")
    if not token.isascii():
        raise ValueError(f"{where} holds characters outside ASCII, which HTTP clients do not "
                         "send alike; use letters, digits and -._~+/=")
    if not all(char.isprintable() and not char.isspace() for char in token):
        raise ValueError(f"{where} holds a space or a control character, which an HTTP "
                         "header cannot carry as part of a bearer token")
    return token


class ServerOptions(_Declared):
    """How ``nb2api serve`` runs the app: address, processes, logs. Not ``create_app``'s."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    uds: str | None = Field(
        None, description="Bind to this unix domain socket instead of host and port."
    )
    reload: bool = Field(
        False,
        description="Reload when the notebook file is saved; a save that cannot be served is "
        "logged and the last good version keeps serving (for development; one process).",
    )
    workers: int = Field(1, ge=1, description="Server processes.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error."
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="One JSON line per record, or text (default: text at a terminal, else json).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class SettingsKeywords(TypedDict, total=False):
    """The keywords ``create_app`` takes: the fields of :class:`Settings` (a test keeps them
    equal), so that a type checker knows them."""

    debug: bool
    max_workers: int | None
    root_path: str
    token: str | None
    token_file: Path | None
    cors_origins: tuple[str, ...]
    max_body_size: int
    max_upload_rows: int
    timeout: float | None
    max_concurrency: int | None
    max_queue: int
    processes: int | None
    metrics: bool
    access_log: bool
    fast_path: bool
    examples: bool
    examples_budget: float
    otel: bool
    skip_broken: bool
    jobs_db: Path | None
    max_jobs: int
    max_result_size: int
    job_ttl: float
    webhook_secret: str | None
    webhook_secret_file: Path | None
    webhook_allow: tuple[str, ...]
    mcp: bool


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return f"{ENV_PREFIX}{name.upper()}"


def markdown_table(model: type[_Declared]) -> str:
    """README's table of ``model``'s settings: flag, variable, default, meaning."""
    rows = ["| flag | environment variable | default | what it does |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        flag = f"`--{name.replace('_', '-')}`"
        if field.annotation is bool:
            flag = f"`--{name.replace('_', '-')}` / `--no-{name.replace('_', '-')}`"
        default = field.default
        shown = "" if default in (None, "", ()) else f"`{default}`"
        if name == "max_body_size":
            shown = f"`{default // 1024**2}MiB`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| {flag} | `{env_var(name)}` | {shown} | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m nb2api.settings: the README tables
    print(markdown_table(Settings))
    print(markdown_table(ServerOptions), end="")
