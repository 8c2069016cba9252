"""The documentation's examples, read from its Markdown so that a test can run them.

Two machine-readable forms, both plain mkdocs-material Markdown:

- A ```` ```console ```` block is a terminal session: a line ``$ command`` (continued by a final
  ``\\``) is run with bash, and the lines below it, up to the next ``$``, are its documented
  output. ``$ nb2api serve NOTEBOOK ...`` starts the server in the background (on a free port of
  127.0.0.1; the page says ``localhost:8000``) and its documented output is what it prints until
  it is ready; the commands after it (``curl localhost:8000/...``) talk to it. A line ``...``
  in an output stands for any number of lines. Blocks written ```` ```bash ```` are not run.
  A job id in an output stands for the id this run made there, and in the commands after it
  (``JobIds``).
- A ```` ```python title="shop.ipynb, cell 3" ```` block is that cell of that notebook, and
  ```` ```python title="test_shop.py" ```` that file: a test checks they are the same text.

A page's commands run when the page asks for it with a comment that names the folder they run
in, ``<!-- docs-test: cwd=docs/notebooks/tutorial -->`` (a folder of notebooks, ``notebooks``
or one under ``docs/notebooks``), in a fresh copy of that folder. A page without it only has its snippets linted.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCUMENTED_PORT = 8000

_FENCE = re.compile(r"^(`{3,})(\w*)(.*)$")
_TITLE = re.compile(r'title="([^"]+)"')
_CWD = re.compile(r"<!-- docs-test: cwd=(\S+) -->")
_CELL = re.compile(r"^(.+\.ipynb), cell (\d+)$")


@dataclass
class Command:
    """``$ text`` and the output lines documented below it (``first``/``last``: their lines in
    the page, 0-based, ``last`` excluded)."""

    text: str
    expected: list[str]
    first: int
    last: int


@dataclass
class Fence:
    language: str
    title: str | None
    lines: list[str]
    first: int  # the first line inside the fence, 0-based
    commands: list[Command] = field(default_factory=list)


def fences(path: Path) -> list[Fence]:
    """Every fenced block of a Markdown page (nested fences are not used in these docs)."""
    found, current, closing = [], None, ""
    for number, line in enumerate(path.read_text().splitlines()):
        stripped = line.strip()
        if current is None:
            match = _FENCE.match(stripped)
            if match:
                closing = match.group(1)
                title = _TITLE.search(match.group(3))
                current = Fence(match.group(2), title and title.group(1), [], number + 1)
        elif stripped == closing:
            found.append(current)
            current = None
        else:
            current.lines.append(line)
    for fence in found:
        if fence.language == "console":
            fence.commands = _commands(fence)
    return found


def _commands(fence: Fence) -> list[Command]:
    commands: list[Command] = []
    lines = fence.lines
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            raise ValueError(f"line {fence.first + index + 1}: a console block starts with '$ '")
        text = lines[index][2:]
        while text.endswith("\\"):
            index += 1
            text = text + "\n" + lines[index]
        index += 1
        start = index
        while index < len(lines) and not lines[index].startswith("$ "):
            index += 1
        commands.append(Command(text, lines[start:index], fence.first + start,
                                fence.first + index))
    return commands


def page_cwd(path: Path) -> Path | None:
    """The folder a page's commands run in, or None for a page whose commands are not run."""
    match = _CWD.search(path.read_text())
    return (ROOT / match.group(1)).resolve() if match else None


def documented_cells(path: Path) -> Iterator[tuple[Fence, Path, int | None]]:
    """``(fence, file, cell)`` for each python block titled with a file (and a cell number)."""
    cwd = page_cwd(path) or path.parent
    for fence in fences(path):
        if fence.language != "python" or not fence.title:
            continue
        match = _CELL.match(fence.title)
        if match:
            yield fence, cwd / match.group(1), int(match.group(2))
        elif (cwd / fence.title).is_file():
            yield fence, cwd / fence.title, None


def pages_with_commands() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md")
                  if page_cwd(p) is not None and any(f.commands for f in fences(p)))


# --- running a page ---------------------------------------------------------------------------


def as_documented(text: str, port: int, folder: Path) -> str:
    """An output as the page shows it: the documented port, the folder as ``/path/to/NAME``."""
    text = text.replace(str(folder), f"/path/to/{folder.name}")
    return re.sub(rf"\b(localhost|127\.0\.0\.1):{port}\b", rf"\1:{DOCUMENTED_PORT}", text)


def normalize(text: str) -> str:
    """What varies from run to run, made the same: durations, clocks, ids."""
    text = re.sub(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "2026-01-01T00:00:00.000Z", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "00:00:00", text)
    text = re.sub(r"process \[\d+\]", "process [0]", text)
    text = re.sub(r"\b\d+\.\d+( ?s)\b", r"0.00\1", text)
    text = re.sub(r" +\d+\.\d+ ms\b", " 0.0 ms", text)  # nb2api test's right-aligned times
    text = re.sub(r'("error_id": ?")[0-9a-f]+"', r'\1…"', text)
    text = re.sub(r"(?im)^(x-request-id: )\S+$", r"\1…", text)
    text = re.sub(r"(?im)^(date: ).*$", r"\1…", text)
    text = re.sub(r'(nb2api\.io/setup-seconds: )"\d+\.\d+"', r'\1"0.00"', text)  # export --k8s
    # export --k8s: memory sized from the peak the export measured, which varies by machine
    text = re.sub(r'^(\s+memory: )"\d+Mi"$', r'\1"…Mi"', text, flags=re.M)
    # spans as OpenTelemetry's console exporter writes them: random ids, clocks
    text = re.sub(r'"0x[0-9a-f]{16}"', '"0x…"', text)
    text = re.sub(r'("nb2api\.error_id": ?")[0-9a-f]+"', r'\1…"', text)
    text = re.sub(r"\[error_id=[0-9a-f]+\]", "[error_id=…]", text)  # in a log line's message
    return text


_PROGRESS = re.compile(r"^\s+still running cell \d+ \(\d+ s\)$")  # every 5 s of a slow cell


def matches(expected: list[str], actual: list[str]) -> bool:
    """``actual`` lines are ``expected``'s, where a line ``...`` stands for any lines, once
    both are normalized."""
    expected = [line for line in expected if not _PROGRESS.match(line)]
    actual = [line for line in actual if not _PROGRESS.match(line)]
    pattern = "".join("(?:.*\n)*?" if line == "..." else re.escape(normalize(line)) + "\n"
                      for line in expected)
    return re.fullmatch(pattern, "".join(normalize(line) + "\n" for line in actual)) is not None


class Session:
    """One page's commands, in a copy of its folder; at most one server at a time."""

    def __init__(self, cwd: Path) -> None:
        if cwd == ROOT or ROOT not in cwd.parents:
            raise ValueError(f"{cwd}: name a folder of notebooks in the repository")
        self.tmp = Path(tempfile.mkdtemp(prefix="nb2api-docs-"))
        self.folder = self.tmp / cwd.name
        shutil.copytree(cwd, self.folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.md"))
        self.port = _free_port()
        self.server: subprocess.Popen | None = None
        self.log: Path | None = None
        self.job_ids = JobIds()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            "NB2API_LOG_FORMAT": "text",  # what a terminal shows
            "COLUMNS": "100",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
        for name in list(self.env):  # a command's settings come from the page, not from here
            if name.startswith("NB2API_") and name != "NB2API_LOG_FORMAT":
                del self.env[name]

    def run(self, command: Command) -> list[str]:
        """Run ``command`` and return its output as the page would show it, as lines."""
        words = shlex.split(command.text.replace("\\\n", " "))
        serve = serve_command(words)
        if serve is not None:
            output = self._serve(serve.args, serve.env, serve.stdout, serve.stderr)
        else:
            text = re.sub(rf"\blocalhost:{DOCUMENTED_PORT}\b", f"127.0.0.1:{self.port}",
                          command.text)
            text = self.job_ids.command(text)
            done = subprocess.run(["bash", "-c", text], cwd=self.folder, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=180)
            output = self.job_ids.output(command.expected, done.stdout)
        return as_documented(output, self.port, self.folder).rstrip().splitlines()

    def _serve(self, args: list[str], env: dict[str, str] | None = None,
               stdout: str | None = None, stderr: str | None = None) -> str:
        self.stop()
        self.port = _free_port()
        self.log = self.folder / stderr if stderr else self.tmp / f"serve-{self.port}.log"
        redirected = (self.folder / stdout).open("w") if stdout else None
        variables = {**self.env, **(env or {})}
        if stderr and "NB2API_LOG_FORMAT" not in (env or {}):
            del variables["NB2API_LOG_FORMAT"]  # a file, not a terminal: nb2api's default
        with self.log.open("w") as out:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "nb2api", "serve", *args, "--port", str(self.port)],
                cwd=self.folder, env=variables, stdout=redirected or out,
                stderr=out, text=True,
            )
        if redirected is not None:
            redirected.close()
        _wait_ready(f"http://127.0.0.1:{self.port}/readyz", self.server, self.log)
        return "" if stderr else self.log.read_text()

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class Serve:
    """``[NAME=value ...] nb2api serve ARGS [> FILE] [2> FILE] [&]``: the server's arguments, the
    variables set for it, and the files (in the page's folder) its standard output and error go
    to when the page starts it in the background (``&``), as a terminal would, to read them
    later."""

    args: list[str]
    env: dict[str, str]
    stdout: str | None = None
    stderr: str | None = None


_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)


def serve_command(words: list[str]) -> Serve | None:
    """The ``nb2api serve`` that ``words`` (a command, split as the shell splits it) runs, or
    None for any other command."""
    env = {}
    while words and (assignment := _ASSIGNMENT.fullmatch(words[0])):
        env[assignment[1]] = assignment[2]
        words = words[1:]
    if words[:2] != ["nb2api", "serve"]:
        return None
    args, files = words[2:], {}
    if args[-1:] == ["&"]:
        args = args[:-1]
        while len(args) >= 2 and args[-2] in (">", "2>") and args[-2] not in files:
            files[args[-2]] = args[-1]
            args = args[:-2]
    return Serve(args, env, files.get(">"), files.get("2>"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"nb2api serve exited early:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout} s")
        process_wait(process, 0.1)


def process_wait(process: subprocess.Popen, seconds: float) -> None:
    """Wait up to ``seconds`` for ``process`` to exit: a poll interval that ends early."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def rewrite_outputs(path: Path, actual: dict[int, list[str]]) -> None:
    """Put each command's actual output (keyed by its ``first`` line) into the page."""
    lines = path.read_text().splitlines()
    commands = [c for f in fences(path) for c in f.commands]
    for command in sorted(commands, key=lambda c: c.first, reverse=True):
        if command.first in actual:
            lines[command.first:command.last] = actual[command.first]
    path.write_text("\n".join(lines) + "\n")


# --- job ids --------------------------------------------------------------------------------

_JOB_ID = re.compile(r'(?:/jobs/|"id": ?"|"next": ?"|\bjob )([\w-]{24})(?![\w-])')


def job_ids(text: str) -> list[str]:
    """The job ids in ``text`` (after ``/jobs/``, ``"id": "``, ``"next": "`` or ``job ``),
    each once, in order."""
    return list(dict.fromkeys(_JOB_ID.findall(text)))


class JobIds:
    """A page shows fixed job ids; each run makes new ones. A new id in a command's output is
    paired with the id the page documents at the same place (in order), so the page's ids go to
    the server in later commands and the server's come back as the page's in outputs."""

    def __init__(self) -> None:
        self.actual: dict[str, str] = {}  # the page's id -> this run's

    def command(self, text: str) -> str:
        for documented, actual in self.actual.items():
            text = text.replace(documented, actual)
        return text

    def output(self, expected: list[str], text: str) -> str:
        documented = [i for i in job_ids("\n".join(expected)) if i not in self.actual]
        made = [i for i in job_ids(text) if i not in self.actual.values()]
        self.actual.update(zip(documented, made, strict=False))
        for page_id, actual in self.actual.items():
            text = text.replace(actual, page_id)
        return text
