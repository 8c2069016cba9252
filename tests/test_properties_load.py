"""Property-based tests of the first stage: any file content, any cell text.

Whatever a notebook file holds, reading it either gives a :class:`ParsedNotebook` or raises a
:class:`NotebookError`, the one failure the CLI turns into a clear message and exit 2; any other
exception would be a Python traceback in front of the user. The same holds for running a safe
subset of parsed notebooks (cells built from harmless lines). The directive parser and the
IPython cleaner never raise at all, and keep what the rest of the pipeline relies on.
"""

from __future__ import annotations

import ast
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.errors import NotebookError
from nb2api.load import ParsedNotebook, load_parsed, parse_notebook, read_notebook
from nb2api.load.clean import defined_names, to_python
from nb2api.load.directives import (
    KNOWN_KEYS,
    DirectiveProblem,
    cell_kind,
    check_directives,
    directive_warnings,
    function_options,
    is_directive,
    parse_directives,
)

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Any JSON value; text includes every code point Python's JSON can carry (lone surrogates too).
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)

# Lines a cell may hold: directives in every spelling, IPython syntax, Python, and noise.
prefixes = st.sampled_from(["#|", "#| ", "# |", "#  |  ", "  #|", "#|\t", "##|", "#", "# "])
keys = st.sampled_from([*KNOWN_KEYS, "API", "Setup", "apii", "echo", "export", "x-y_z"]) | \
    st.text(alphabet=string.ascii_letters + string.digits + "-_|:", min_size=1, max_size=8)
values = st.sampled_from(["", "GET /a/{b}", "post /x", "PATCH  /", "GET", "/x", "process",
                          "thread", "0.5", "-1", "false", "1e999", "{", "é ü"]) | \
    st.text(max_size=12)
directive_lines = st.builds(lambda p, k, sep, v: f"{p}{k}{sep}{v}", prefixes, keys,
                            st.sampled_from(["", ":", ": ", " : ", "::"]), values)
ipython_lines = st.sampled_from([
    "%time x = 1", "%timeit -n 2 -r1 x = 1", "%timeit", "%time", "%%time", "%%timeit -n1",
    "%%capture out", "%%bash", "%%writefile f.txt", "%%", "%matplotlib inline", "!ls -l",
    "files = !ls", "a, b = !echo 1 2", "!echo \\", "x?", "??x", "%load_ext autoreload",
    "%env A=1", "%%html", "  %time y = 2", "%time def", "%timeit -q -o (", "%cd /tmp",
])
python_lines = st.sampled_from([
    "x = 1", "import math", "def f(x: int) -> int:", "    return x", "async def g():",
    "    await h()", "class C:", "    pass", "@decorator", "for i in range(2):", "    y = i",
    "await x", "return 1", "yield 2", "", "   ", "\t", "if x:", "else:", "(", ")", "'''",
    "lambda: (yield)", "from __future__ import annotations", "from x import *",
    "with open(p) as (a, b):", "del x", "x: int", "print('é', \"\\u2028\")",
])
cell_lines = directive_lines | ipython_lines | python_lines | st.text(max_size=30)
cell_texts = st.lists(cell_lines, max_size=12).map("\n".join) | st.text(max_size=200)


def _cell(source, *, cell_type="code", tags=None, source_as_list=False):
    cell = {"cell_type": cell_type, "metadata": {}, "source": source}
    if source_as_list and isinstance(source, str):
        cell["source"] = source.splitlines(True)
    if cell_type == "code":
        cell.update(outputs=[], execution_count=None)
    if tags is not None:
        cell["metadata"]["tags"] = tags
    return cell


odd = json_values  # a value where the format wants something specific
tags = st.lists(st.sampled_from(["api", "setup", "API", "Setup", "example", ""]) | st.text(
    max_size=6), max_size=3) | odd
cells = st.one_of(
    st.builds(_cell, cell_texts, cell_type=st.sampled_from(["code", "markdown", "raw"]),
              tags=st.none() | tags, source_as_list=st.booleans()),
    st.builds(_cell, odd, cell_type=st.sampled_from(["code", "markdown"]) | odd, tags=tags),
    st.dictionaries(st.sampled_from(["cell_type", "source", "metadata", "outputs", "id"]), odd),
    odd,
)
v4_notebooks = st.fixed_dictionaries(
    {"nbformat": st.sampled_from([4, 4.0, "4", 5, None, True]) | odd,
     "nbformat_minor": st.integers(-1, 10) | odd,
     "cells": st.lists(cells, max_size=6) | odd},
    optional={"metadata": st.fixed_dictionaries({}, optional={"title": odd, "kernelspec": odd})
              | odd},
)
v3_cells = st.one_of(
    st.fixed_dictionaries({"cell_type": st.sampled_from(["code", "markdown", "heading"]),
                           "input": cell_texts | odd, "source": cell_texts | odd,
                           "metadata": st.fixed_dictionaries({}, optional={"tags": tags}) | odd,
                           "language": st.just("python"), "outputs": st.just([])}),
    odd,
)
v3_notebooks = st.fixed_dictionaries(
    {"nbformat": st.sampled_from([1, 2, 3]), "nbformat_minor": st.integers(0, 3),
     "worksheets": st.lists(st.fixed_dictionaries(
         {"cells": st.lists(v3_cells, max_size=4)}) | odd, max_size=2) | odd},
    optional={"metadata": odd},
)


def _parses_or_refuses(text: str) -> ParsedNotebook | None:
    try:
        parsed = parse_notebook(text, "prop.ipynb")
    except NotebookError as error:
        assert str(error)  # the one line the CLI prints
        return None
    assert parsed.cells, "a parsed notebook has at least one marked cell"
    for cell in parsed.cells:
        assert cell.kind in ("setup", "api")
        assert isinstance(cell.source, str) and isinstance(cell.code, str)
        ast.parse(cell.code)  # what will run is Python
    assert parsed.title is None or isinstance(parsed.title, str), parsed.title
    return parsed


@SETTINGS
@given(st.one_of(v4_notebooks, v3_notebooks, json_values))
def test_any_notebook_json_parses_or_is_a_notebook_error(document):
    _parses_or_refuses(json.dumps(document))


# Format 4 with every key in place and one thing odd: the cases a reader must refuse by name.
nearly_valid_cells = st.builds(
    _cell, cell_texts | st.lists(st.text(max_size=10) | odd, max_size=3) | odd,
    cell_type=st.sampled_from(["code", "code", "markdown"]), tags=st.none() | tags,
)


@SETTINGS
@given(st.lists(nearly_valid_cells, min_size=1, max_size=4),
       st.just({}) | st.fixed_dictionaries({"title": odd}) | odd)
def test_nearly_valid_notebooks_parse_or_are_a_notebook_error(cells, metadata):
    marked = [_cell("#| api\ndef f(x: int) -> int:\n    return x")]
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata,
                "cells": marked + cells}
    _parses_or_refuses(json.dumps(document))


@SETTINGS
@given(st.text(max_size=300) | st.sampled_from(['{"nbformat": 4, "cells": [', "\ufeff{}", ""]))
def test_any_text_parses_or_is_a_notebook_error(text):
    _parses_or_refuses(text)


@settings(max_examples=25, deadline=None, database=None)
@given(st.binary(max_size=64))
def test_any_file_bytes_read_or_are_a_notebook_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("bytes") / "any.ipynb"
    path.write_bytes(content)
    try:
        read_notebook(path)
    except NotebookError:
        pass


def test_a_huge_unicode_source_parses():
    source = "#| api\n" + "".join(f"# {chr(0x1F600 + i % 80)} ünïcödé line {i}\n"
                                  for i in range(20_000)) + "def f(x: int) -> int:\n    return x"
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [_cell(source, source_as_list=True)]}
    parsed = _parses_or_refuses(json.dumps(document, ensure_ascii=False))
    assert parsed is not None and parsed.cells[0].code.count("\n") == 20_003


# Cells that are safe to run: only these lines, so running one cannot touch the machine.
SAFE_BODIES = st.sampled_from([
    "x = 1", "import math", "def f(a: int, b: float = 1.0) -> float:\n    return a * b",
    "async def g(s: str) -> str:\n    return s", "def _private():\n    return 1",
    "def h():\n    return 1", "class C:\n    pass", "raise ValueError('setup fails')",
    "y = undefined_name", "def k(x: Missing) -> int:\n    return 1", "%time z = 2",
    "!echo hi", "files = !ls", "%%time\nw = 1", "%%bash\necho hi", "await_me = 1",
    "import asyncio\nawait asyncio.sleep(0)", "def f(x):\n    return x", "def (",
    "return 1", "import sys\nsys.exit(3)",
])  # not `raise KeyboardInterrupt`: loading lets Ctrl-C through, by design, and would stop pytest


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.tuples(st.lists(directive_lines | st.sampled_from(["#| api", "#| setup"]),
                                   max_size=3), SAFE_BODIES,
                          st.lists(directive_lines, max_size=2), SAFE_BODIES | st.just("")),
                min_size=1, max_size=4))
def test_safe_cells_load_or_are_a_notebook_error(tmp_path_factory, pieces):
    folder = tmp_path_factory.mktemp("load")
    sources = ["\n".join([*head, body, *middle, tail]) for head, body, middle, tail in pieces]
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [_cell(s) for s in sources]}
    path = folder / "safe.ipynb"
    path.write_text(json.dumps(document))
    try:
        parsed = read_notebook(path)
        loaded = load_parsed(parsed)
    except NotebookError as error:
        assert str(error)
        return
    assert loaded.functions
    assert all(not f.name.startswith("_") for f in loaded.functions)


@SETTINGS
@given(cell_texts)
def test_directives_parse_without_raising(source):
    directives = parse_directives(source)
    lines = source.splitlines()
    for d in directives:
        assert 1 <= d.line <= len(lines)
        assert is_directive(lines[d.line - 1])
        assert d.key == d.key.lower() and d.value == d.value.strip()
    header = [d.in_header for d in directives]
    assert header == sorted(header, reverse=True)  # header directives come first
    assert cell_kind([], directives) in (None, "setup", "api")
    for line, message in directive_warnings(directives):
        assert 1 <= line <= len(lines) and message
    try:
        check_directives(directives)
    except DirectiveProblem as problem:  # its documented way to refuse, read turns it into
        assert problem.reason and 1 <= problem.line <= len(lines)  # a DirectiveError


@SETTINGS
@given(cell_texts, st.lists(st.tuples(st.integers(-2, 20), st.sampled_from("fgh_")),
                            max_size=4, unique_by=lambda d: d[1]))
def test_function_options_apply_or_refuse(source, defs):
    directives = parse_directives(source)
    try:
        options = function_options(directives, defs)
    except DirectiveProblem as problem:
        assert problem.reason and problem.line in {d.line for d in directives}
        return
    assert set(options) == {name for _, name in defs}
    for given_options in options.values():
        assert set(given_options) <= {"route", "timeout", "max-concurrency", "executor", "job"}


@SETTINGS
@given(cell_texts)
def test_cleaning_gives_python_or_a_syntax_error_with_its_line(source):
    python = to_python(source)
    if python.error is None:
        ast.parse(python.code)
    else:
        line, message = python.error
        assert message
        assert line is None or isinstance(line, int)
    for item in python.left_out:
        assert 1 <= item.line and item.kind.startswith("an IPython")
    assert isinstance(defined_names(source), set)
