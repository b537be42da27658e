"""Invariants of the runtime's structure (docs/ARCHITECTURE.md): modules import each other in one
direction only (no cycles, not even through imports inside functions), no module reaches into
another's private names, modules and classes stay small, and the NOTIFY channels that the
listener knows are exactly those the schema's triggers and statements send."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from runtime import listener

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
MAX_MODULE_LINES = 800
MAX_CLASS_METHODS = 40
# DBOS's Python API is one class by contract (a DBOS app ports by changing one import), so the
# facade may be wider; it holds no logic of its own: every method delegates in a few statements.
# The class is assembled from one mixin per concern (runtime/facade/): each part is the facade too.
FACADE = "runtime.dbos.DBOS"
FACADE_PARTS = "runtime.facade."
MAX_FACADE_METHOD_STATEMENTS = 20


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNTIME.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(RUNTIME.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (at module level or inside a function), skipping the
    blocks that only the type checker reads."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _edges(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported runtime module, imported name or None) for each import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None
            continue
        target = _resolve(module, node)
        if target is None or target not in MODULES:
            continue
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in MODULES:  # `from runtime import context`: the module itself
                yield submodule, None
            else:
                yield target, alias.name


def import_graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _edges(m) if t != m} for m in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checks_see_a_cycle_and_a_private_import() -> None:
    # The checks themselves: a cycle of three modules is found, a tree is not.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert ("runtime.engine.core", "Engine") in set(_edges("runtime.engine"))


def test_no_import_cycle_between_runtime_modules() -> None:
    assert find_cycles(import_graph()) == []


def test_no_module_imports_another_modules_private_name() -> None:
    offenders = [
        f"{module} imports {target}.{name}"
        for module in MODULES
        for target, name in _edges(module)
        if name is not None and name.startswith("_") and target != module
    ]
    assert offenders == []


def test_no_module_reads_another_modules_private_attribute() -> None:
    """``module._name`` on an imported runtime module (``from runtime import x`` then
    ``x._private``) is reaching in as much as importing the name."""
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {
            alias.asname or alias.name
            for node in _runtime_imports(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if f"{_resolve(module, node)}.{alias.name}" in MODULES
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    assert offenders == []


def test_modules_and_classes_stay_small() -> None:
    too_long = {
        m: n
        for m, p in MODULES.items()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
    too_wide = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                methods = [
                    n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
                name = f"{module}.{node.name}"
                if name == FACADE or name.startswith(FACADE_PARTS):
                    for method in methods:
                        statements = sum(isinstance(n, ast.stmt) for n in ast.walk(method)) - 1
                        assert statements <= MAX_FACADE_METHOD_STATEMENTS, (name, method.name)
                elif len(methods) > MAX_CLASS_METHODS:
                    too_wide[name] = len(methods)
    assert too_wide == {}


def test_listener_channels_are_the_ones_the_database_notifies() -> None:
    sql = [(RUNTIME / "schema.sql").read_text()]
    sql += [p.read_text() for p in sorted((RUNTIME / "migrations").glob("*.sql"))]
    sql.append((RUNTIME / "queries.py").read_text())
    sent = set(re.findall(r"(?:pg_notify|notify_if_short)\('([a-z_]+)'", "\n".join(sql)))
    assert sent == set(listener.CHANNELS)
    # No module but the listener names a channel.
    for module, path in MODULES.items():
        if module != "runtime.listener":
            text = path.read_text()
            assert not any(f'"{channel}"' in text for channel in sent), module
