"""The layers of docs/architecture.md, enforced: every import of every module of client/, agent/, grouping/ and
rankwise/ is read with ``ast`` (imports inside functions count: a cycle hidden behind a function-level import
is still a cycle; imports under ``if TYPE_CHECKING:`` do not, they never run), and

- no two modules import each other, directly or around a loop (strongly connected components of the graph);
- ``client/`` (imported by every training process) never imports ``agent/`` or ``rankwise/``;
- ``grouping/`` (the pure merge rules) imports only numpy, the standard library and itself;
- ``agent/`` never imports ``rankwise/``;
- no module is over 400 lines, except the catalogues in ``LONG_MODULES``.

``import a.b`` depends on the module ``a.b``; ``from a import b`` on the module ``a.b`` when there is one, else
on ``a`` (``b`` is a name defined there). A package is its ``__init__.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("client", "agent", "grouping", "rankwise")
MAX_LINES = 400
# Catalogues: one entry per public thing, nothing to split by concept. Keep this list tiny.
LONG_MODULES = {"rankwise/plot.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    """Every Import / ImportFrom under ``node``, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _imports(module: str) -> list[tuple[str, int]]:
    """(absolute name imported, line) for every import of ``module``: ``x.y`` for ``import x.y`` and for
    ``from x import y`` when x.y is a module of ours, else ``x``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            out.append((sub if sub in MODULES else source, node.lineno))
    return out


IMPORTS = {module: _imports(module) for module in MODULES}


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO)}:{line}"


def _offenders(packages: tuple[str, ...], allowed) -> list[str]:
    found = []
    for module, imports in IMPORTS.items():
        if module.split(".")[0] not in packages:
            continue
        for name, line in imports:
            if not allowed(name.split(".")[0]):
                found.append(f"{_where(module, line)} imports {name}")
    return found


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph = {m: sorted({name for name, _ in IMPORTS[m] if name in MODULES and name != m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                nxt = graph[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(components)


def _edges_within(component: list[str]) -> list[str]:
    members = set(component)
    edges = {(m, line, name) for m in component for name, line in IMPORTS[m] if name in members and name != m}
    return [f"{_where(m, line)} -> {name}" for m, line, name in sorted(edges)]


def test_the_import_graph_is_read():
    """The parser sees the packages and their imports, function-level ones included (else the tests below
    would pass on nothing)."""
    assert all(p in MODULES for p in PACKAGES), sorted(MODULES)
    assert sum(len(v) for v in IMPORTS.values()) > 100, "fewer than 100 imports found in four packages"
    tree = ast.parse("def f():\n    import a.b\nif TYPE_CHECKING:\n    import c\nelse:\n    import d\n")
    assert [alias.name for node in _import_nodes(tree) for alias in node.names] == ["a.b", "d"]


def test_no_import_cycles_between_modules():
    """No module imports itself around a loop of imports (function-level imports included): a cycle means
    two modules that cannot be read, tested or moved apart, and import order that decides what works."""
    cycles = _cycles()
    report = "\n\n".join(f"cycle of {len(c)}: {', '.join(c)}\n  " + "\n  ".join(_edges_within(c)) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) between modules:\n{report}"


def test_client_never_imports_agent_or_rankwise():
    """client/ runs inside every training process: it must not pull in the agent or the public API/UI."""
    bad = _offenders(("client",), lambda top: top not in ("agent", "rankwise"))
    assert not bad, "client/ imports agent/ or rankwise/:\n" + "\n".join(bad)


def test_grouping_imports_only_numpy_the_standard_library_and_itself():
    """grouping/ holds the pure merge rules shared by agent and readers: numpy and the standard library only."""
    allowed = {"numpy", "grouping", *sys.stdlib_module_names}
    bad = _offenders(("grouping",), lambda top: top in allowed)
    assert not bad, "grouping/ imports beyond numpy, the standard library and itself:\n" + "\n".join(bad)


def test_agent_never_imports_rankwise():
    """agent/ is below the public API: rankwise/ may read what the agent writes, never the other way round."""
    bad = _offenders(("agent",), lambda top: top != "rankwise")
    assert not bad, "agent/ imports rankwise/:\n" + "\n".join(bad)


def test_no_module_over_400_lines_outside_the_catalogues():
    """One concept per module: none over 400 lines except the catalogues listed in LONG_MODULES (which must
    still exist, so the list cannot go stale)."""
    stale = sorted(name for name in LONG_MODULES if not (REPO / name).is_file())
    assert not stale, f"LONG_MODULES lists files that do not exist: {stale}"
    long = sorted(
        (n, str(path.relative_to(REPO)))
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES and str(path.relative_to(REPO)) not in LONG_MODULES
    )
    listing = "\n".join(f"{path}: {n} lines" for n, path in reversed(long))
    assert not long, f"{len(long)} module(s) over {MAX_LINES} lines:\n{listing}"


# ---------------------------------------------------------------- docs/architecture.md stays true

ARCHITECTURE = REPO / "docs" / "architecture.md"


def _cited_paths(text: str) -> set[str]:
    """Repository paths in backticks (``client/run.py``, ``agent/sinks/``), stripped of a trailing name."""
    out = set()
    for quoted in re.findall(r"`([^`\s]+)`", text):
        path = quoted.split()[0]
        if re.fullmatch(r"(client|agent|grouping|rankwise|tests|benchmarks|docs)/[\w./-]*", path):
            out.add(path)
    return out


def test_every_file_docs_architecture_names_exists():
    """Every repository path docs/architecture.md cites in backticks exists: the picture follows the code
    when files move."""
    missing = sorted(p for p in _cited_paths(ARCHITECTURE.read_text()) if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def _reads_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        attribute = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
        if attribute and isinstance(node.value, ast.Name) and node.value.id == "os":
            return True
        named = isinstance(node, ast.ImportFrom) and node.module == "os"
        if named and any(alias.name in ("environ", "getenv") for alias in node.names):
            return True
    return False


def test_the_environment_is_read_only_where_docs_architecture_says():
    """Settings come from the environment in the modules the "Where settings are read" section of
    docs/architecture.md lists, and nowhere else in client/, agent/, grouping/, rankwise/ (a module that
    reads ``os.environ`` on its own is a setting the one frozen settings object does not know)."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Where settings are read", 1)[1].split("\n## ", 1)[0]
    listed = {p for p in _cited_paths(section) if p.endswith(".py")}
    assert listed, "the section lists no module"
    readers = {str(path.relative_to(REPO)) for path in MODULES.values() if _reads_environment(path)}
    assert readers <= listed, (
        f"modules reading the environment that the section does not list: {sorted(readers - listed)}"
    )
