"""The package's shape: stages import downwards only, no cycles, and ``types/`` stands alone.

The import graph is read from the source with ``ast`` (every import, also those inside
functions), so an import hidden in a function to dodge a cycle is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nb2api

PACKAGE = Path(nb2api.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """What ``path`` imports, as ``(module, names)``: ``from a.b import c`` is ``("a.b", ["c"])``
    (``c`` may be a module of ``a.b`` or a name in it), ``import a.b`` is ``("a.b", [])``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                base = package.split(".")
                prefix = ".".join(base[: len(base) - node.level + 1])
                found.append((f"{prefix}.{node.module}" if node.module else prefix, names))
            else:
                found.append((node.module or "", names))
    return [(target, names) for target, names in found if target.split(".")[0] == "nb2api"]


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}
    # a wrong PACKAGE would make every check below pass over nothing
    assert {"nb2api.cli", "nb2api.routes", "nb2api.serve.app", "nb2api.load"} <= set(modules)
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported, names in _imports(path):
            submodules = [f"{imported}.{n}" for n in names if f"{imported}.{n}" in modules]
            if submodules and len(submodules) == len(names):
                found = submodules  # from . import images: the module, not the package
            else:
                while imported not in modules and "." in imported:
                    imported = imported.rpartition(".")[0]
                found = [imported, *submodules]
            targets |= {t for t in found if t in modules and t != name}
        graph[name] = targets
    return graph


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_types_imports_nothing_else_of_nb2api():
    graph = _graph()
    for module, targets in graph.items():
        if _stage(module) == "types":
            outside = {t for t in targets if _stage(t) != "types"}
            assert not outside, f"{module} imports {outside}"


# Which stage may import which: the pipeline load -> routes -> serve -> edges, with settings,
# errors, types and the version below every stage.
_BELOW = {"_version", "settings", "errors", "types"}
_ALLOWED = {
    "_version": set(),
    "settings": set(),
    "errors": set(),
    "types": set(),
    "load": {"errors"},
    "routes": {"errors", "load", "types"},
    "serve": _BELOW | {"load", "routes"},
    "cli": _BELOW | {"load", "routes", "serve", "export", "ray", "contract", "mcp"},
    "contract": _BELOW | {"load", "routes", "serve"},
    "export": _BELOW | {"load", "routes", "serve", "k8s"},
    "k8s": set(),
    "ray": _BELOW | {"load", "routes", "serve"},
    "jupyter": _BELOW | {"load", "routes", "serve"},
    "mcp": _BELOW | {"load", "routes", "serve"},
    "__main__": {"cli"},
    "__init__": {"_version", "jupyter", "errors", "load", "mcp", "routes", "serve", "settings"},
}


def test_stages_import_downwards_only():
    for module, targets in _graph().items():
        stage = _stage(module)
        assert stage in _ALLOWED, f"{module}: a new stage? add it to the architecture"
        for target in targets:
            other = _stage(target)
            assert other == stage or other in _ALLOWED[stage], f"{module} imports {target}"
