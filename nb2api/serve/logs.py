"""Structured logs: one JSON line per record, or readable text for a terminal.

Every record made while a request is handled carries that request's id (``request_id``, a context
variable that the request middleware sets and that worker threads inherit), so an error's
traceback, the notebook's own log lines and the request's access line can be joined on it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "text"]

request_id: ContextVar[str | None] = ContextVar("nb2api_request_id", default=None)

access_logger = logging.getLogger("nb2api.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# A finished record for the access logger, copied per request: making one through
# ``Logger.log`` (caller lookup, thread and process names) costs more than the rest of the line.
_ACCESS_RECORD = vars(logging.makeLogRecord({"name": access_logger.name, "args": None}))
_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO"}


def log_request(level: int, message: str, fields: dict[str, Any]) -> None:
    """One request line on ``nb2api.access``; ``fields`` become the record's attributes."""
    if not access_logger.isEnabledFor(level):
        return
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(_ACCESS_RECORD)
    attributes.update(fields)
    now = time.time()
    attributes["msg"] = message
    attributes["levelno"] = level
    attributes["levelname"] = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
    attributes["created"] = now
    attributes["msecs"] = (now - int(now)) * 1000
    attributes["_fields"] = fields
    access_logger.handle(record)


def access_json_handler(level: int) -> BufferedStderrHandler | None:
    """The handler an enabled request line at ``level`` would reach, when nb2api's own JSON
    setup is the only one (``nb2api serve --log-format json``): then the middleware writes the
    line itself, the same bytes ``JSONFormatter`` would make, without a ``LogRecord``. Else
    ``None``: use :func:`log_request`, which any handler, filter or formatter sees as usual."""
    logger = access_logger
    if logger.handlers or logger.filters or not logger.propagate or logger.disabled:
        return None
    root = logger.root
    handlers = root.handlers
    if len(handlers) != 1 or root.filters:
        return None
    handler = handlers[0]
    if (type(handler) is not BufferedStderrHandler or handler.filters or level < handler.level
            or type(handler.formatter) is not JSONFormatter):
        return None
    return handler


def default_format() -> LogFormat:
    """JSON for machines (a pipe, a file, a container's log driver), text at a terminal."""
    return "text" if sys.stderr.isatty() else "json"


_second: list = [-1, ""]  # the last whole second formatted, and its text


def timestamp(created: float) -> str:
    """``2026-11-25T14:32:46.728Z`` (UTC), the whole seconds formatted once per second."""
    seconds = int(created)
    if seconds != _second[0]:
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        fields = record.__dict__.get("_fields")
        if fields is not None:  # a request line: its fields are known
            entry.update(fields)
            return orjson.dumps(entry, default=str).decode()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
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


class BufferedStderrHandler(logging.StreamHandler):
    """Writes to stderr in batches: at most every ``interval`` seconds, or at 64 KiB.

    One ``write`` system call per request line costs a busy server a fifth of its throughput;
    batching keeps request logs nearly free. Records at WARNING and above, and everything at
    exit, are written at once, so errors are never held back; a crash loses at most the last
    ``interval`` of request lines.
    """

    def __init__(self, interval: float = 0.2, limit: int = 65536) -> None:
        super().__init__(sys.stderr)
        self.interval = interval
        self.limit = limit
        self._pending: list[str] = []
        self._size = 0
        self._wake = threading.Event()
        self._start_flusher()
        os.register_at_fork(after_in_child=self._after_fork)

    def _start_flusher(self) -> None:
        self._closed = False
        threading.Thread(target=self._flush_loop, name="nb2api-log-flush", daemon=True).start()

    def _after_fork(self) -> None:  # a forked worker process gets its own flusher thread
        self._pending, self._size = [], 0
        self._wake = threading.Event()
        self._start_flusher()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self.limit:
            self._write()

    def write_line(self, line: str) -> None:
        """Queue one finished line (newline included), as ``emit`` would after formatting."""
        with self.lock:
            self._pending.append(line)
            self._size += len(line)
            size = self._size
        if size >= self.limit:
            # The flusher thread writes (the GIL is free during the write, so the event loop
            # goes on); this thread writes itself only when the flusher falls far behind.
            if size >= 8 * self.limit:
                self.flush()
            elif not self._wake.is_set():  # set() takes a lock and notifies: once is enough
                self._wake.set()

    def _write(self) -> None:
        if not self._pending:
            return
        text, self._pending, self._size = "".join(self._pending), [], 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # stderr closed or full: logging must never break a request
            pass

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


def logging_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict; uvicorn applies it in every worker process too."""
    formatter = JSONFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nb2api": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {"()": f"{__name__}.BufferedStderrHandler", "formatter": "nb2api"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own handlers would print its lines a second time, unformatted.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},  # nb2api logs requests
        },
    }
