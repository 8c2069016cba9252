"""Structured logs: one JSON line per record, or readable text for a terminal.

Every record made while a request is handled carries that request's id (``request_id``, a context
variable that the request middleware sets and that worker threads inherit), so an error's
traceback, the notebook's own log lines and the request's access line can be joined on it; with
tracing on, also its trace id (``trace_id``), which joins them to the trace.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
import time
import weakref
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["json", "text"]

request_id: ContextVar[str | None] = ContextVar("nb2api_request_id", default=None)
# The OpenTelemetry trace id of the request, as 32 hex digits, when tracing is on (.tracing).
trace_id: ContextVar[str | None] = ContextVar("nb2api_trace_id", default=None)

access_logger = logging.getLogger("nb2api.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or from an
# installed record factory (so not ``makeLogRecord``, which would use that factory).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"
}


def log_request(level: int, message: str, fields: dict[str, Any]) -> None:
    """One request line on ``nb2api.access``; ``fields`` become the record's attributes.

    The record comes from ``Logger.makeRecord``, so from the record factory that is installed
    (``logging.setLogRecordFactory``: OpenTelemetry's trace ids, for example). It is not
    ``Logger.log``, whose caller lookup would always find this function. Where nothing but
    ``JSONFormatter`` would ever see the record, the line is queued without one.
    """
    if not access_logger.isEnabledFor(level):
        return
    handler = _only_json_handler(level)
    if handler is not None:
        # A LogRecord made and formatted per request costs a third more CPU per request
        # (bench/bench_logging.py): queue the line JSONFormatter would make of it.
        entry = _entry(time.time(), _LEVEL_TEXT.get(level) or logging.getLevelName(level).lower(),
                       access_logger.name, message)
        entry.update(fields)
        handler.enqueue(orjson.dumps(entry, default=str).decode() + "\n")
        return
    access_logger.handle(
        access_logger.makeRecord(access_logger.name, level, "", 0, message, None, None,
                                 extra=fields)
    )


_LEVEL_TEXT = {logging.DEBUG: "debug", logging.INFO: "info"}


def _only_json_handler(level: int) -> QueuedStderrHandler | None:
    """The handler a request line at ``level`` goes to when a record of it would only be
    formatted by ``JSONFormatter`` and queued: the stock logger and record factory, no filter,
    and one handler on the way up, a ``QueuedStderrHandler`` (``nb2api serve --log-format
    json``). Else ``None``."""
    if (logging.getLogRecordFactory() is not logging.LogRecord or access_logger.filters
            or type(access_logger) is not logging.Logger):
        return None
    found = None
    logger: logging.Logger | None = access_logger
    while logger is not None:
        for handler in logger.handlers:
            if (found is not None or type(handler) is not QueuedStderrHandler or handler.filters
                    or level < handler.level or type(handler.formatter) is not JSONFormatter):
                return None
            found = handler
        logger = logger.parent if logger.propagate else None
    return found


def default_format() -> LogFormat:
    """JSON for machines (a pipe, a file, a container's log driver), text at a terminal."""
    return "text" if sys.stderr.isatty() else "json"


_second = (-1, "")  # the last whole second formatted, and its text


def timestamp(created: float) -> str:
    """``2026-11-25T14:32:46.728Z`` (UTC), the whole seconds formatted once per second."""
    global _second
    seconds = int(created)
    cached = _second  # one read: another thread may replace it meanwhile, never change it
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{int((created - seconds) * 1000):03d}Z"


def _entry(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    entry = {"time": timestamp(created), "level": level, "logger": logger, "message": message}
    rid = request_id.get()
    if rid is not None:
        entry["request_id"] = rid
    tid = trace_id.get()
    if tid is not None:
        entry["trace_id"] = tid
    return entry


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record.created, record.levelname.lower(), record.name,
                       record.getMessage())
        entry.update({key: value for key, value in record.__dict__.items()
                      if key not in _STANDARD and key[:1] != "_"})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


# Line breaks, other C0 and C1 controls (ANSI escapes start with ESC, 0x1b, or CSI, 0x9b) and
# Unicode's line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` with every control character but tab escaped (``\\n``, ``\\x1b``), so that a
    path or a value sent by a client cannot start a forged log line or drive the terminal."""
    return text if text.isprintable() else _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  POST /predict 200 3.1 ms [request id]`` for people at a terminal.

    The message is one line whatever it holds (:func:`printable`); a traceback follows it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        if rid is not None and record.name != access_logger.name:
            first, newline, rest = text.partition("\n")
            text = f"{first} [request {rid}]{newline}{rest}"
        return text


class QueuedStderrHandler(QueueHandler):
    """Formats a record where it is made and queues the line; a ``QueueListener`` thread writes.

    One ``write`` system call per request line costs a busy server a fifth of its throughput, and
    the event loop should not wait on a full pipe. The listener writes the lines it has each time
    the queue runs dry (or ``limit`` lines have gathered): under load one ``write`` carries many
    lines, and no line, a warning or an error included, waits for a timer. ``close``, which
    ``logging.shutdown`` calls at exit (and ``dictConfig`` when it replaces the handler), writes
    everything queued. A forked process (the ``#| executor: process`` pool) gets a fresh queue
    and listener: the parent's thread does not survive the fork, and the parent writes what it
    had queued.
    """

    def __init__(self, stream: TextIO | None = None, limit: int = 256) -> None:
        super().__init__(queue.SimpleQueue())
        self.writer = _Writer(stream if stream is not None else sys.stderr, limit)
        self._listen()

    def _listen(self) -> None:
        self.writer.queue = self.queue
        self.listener = QueueListener(self.queue, self.writer)
        self.listener.start()
        _listening.add(self)

    def prepare(self, record: logging.LogRecord) -> Any:
        # The finished line, formatted in the thread that made the record (the request id is a
        # context variable there), and the record left as it was for other handlers.
        return self.format(record) + "\n"

    def close(self) -> None:
        if self in _listening:
            _listening.discard(self)
            self.listener.stop()  # the thread writes what is queued, then ends
            self.writer.flush()
        super().close()

    def _after_fork_in_child(self) -> None:
        self.queue = queue.SimpleQueue()
        self.writer.drop_pending()
        self._listen()


class _Writer:
    """What the listener thread hands each queued line to (the listener's only "handler"; it
    gets the finished lines ``QueuedStderrHandler.prepare`` made, not records)."""

    def __init__(self, stream: TextIO, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lines: list[str] = []

    def handle(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        if len(lines) >= self.limit or self.queue.empty():
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        text = "".join(self._lines)
        self.drop_pending()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # stderr closed or full: logging must never break a request
            pass

    def drop_pending(self) -> None:
        self._lines = []


# The handlers whose listener runs: a forked child restarts these, and only these.
_listening: weakref.WeakSet[QueuedStderrHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_listening):
        handler._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def logging_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict; uvicorn applies it in every worker process too."""
    formatter = JSONFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nb2api": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {"()": f"{__name__}.QueuedStderrHandler", "formatter": "nb2api"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own handlers would print its lines a second time, unformatted.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},  # nb2api logs requests
        },
    }
