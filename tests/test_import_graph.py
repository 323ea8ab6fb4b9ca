"""The import graph of `src/wrenn_platform`, drawn from the source (every `import`, including those
inside functions; not those under `if TYPE_CHECKING:`, which never run):

- the control plane reaches the host agent only through the neutral `agent_link` package, except
  in the one module that runs the embedded agent in process;
- `agent_link` and `wire`, shared by both sides, import neither side;
- no module imports itself back through others (importing `a.b.c` also runs `a` and `a.b`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = "wrenn_platform"
SRC = Path(__file__).resolve().parents[1] / "src"
EMBEDDED_AGENT = "wrenn_platform.control_plane.embedded_agent"

Graph = dict[str, set[str]]


def modules(src: Path) -> dict[str, Path]:
    found = {}
    for path in (src / PACKAGE).rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module name `name` imports (as written, resolved to absolute names)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit_one(stmt)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{module}.{alias.name}"
                names.add(sub if sub in known else module)
        visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    return names


def import_graph(src: Path = SRC) -> Graph:
    known = modules(src)
    graph: Graph = {}
    for name, path in known.items():
        deps: set[str] = set()
        for imported in _imported_names(name, path, known):
            if not imported.startswith(PACKAGE):
                continue
            while imported not in known and "." in imported:  # `from mod import function`
                imported = imported.rsplit(".", 1)[0]
            while imported:  # the module and the packages above it run
                if imported in known and imported != name and not name.startswith(imported + "."):
                    deps.add(imported)
                imported = imported.rpartition(".")[0]
        graph[name] = deps
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def imports_of(graph: Graph, inside: str, into: str) -> dict[str, set[str]]:
    """Modules under package `inside` that import something under package `into`."""
    def under(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return {m: {d for d in deps if under(d, into)} for m, deps in graph.items()
            if under(m, inside) and any(under(d, into) for d in deps)}


def test_control_plane_reaches_the_agent_only_through_agent_link() -> None:
    graph = import_graph()
    offenders = imports_of(graph, f"{PACKAGE}.control_plane", f"{PACKAGE}.host_agent")
    assert set(offenders) == {EMBEDDED_AGENT}, offenders


def test_a_control_plane_without_an_embedded_agent_loads_no_agent_code() -> None:
    """What the graph allows, the process does: building the app of a replica that runs no agent of
    its own loads no `host_agent` module."""
    script = (
        "import sys\n"
        "from wrenn_platform.control_plane.app import create_app\n"
        "from wrenn_platform.control_plane.settings import Settings\n"
        "create_app(Settings(embedded_agent=False))\n"
        "print(sorted(m for m in sys.modules if m.startswith('wrenn_platform.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out.strip())
    assert f"{PACKAGE}.control_plane.app" in loaded and f"{PACKAGE}.agent_link.client" in loaded
    assert [m for m in loaded if m.startswith(f"{PACKAGE}.host_agent")] == []


# envd ships alone into templates, so its wire constants (port, version, Connect framing) are
# defined in envd/protocol.py, a leaf module importing nothing; wire/envd.py re-exports them.
ENVD_CONSTANTS = {f"{PACKAGE}.envd", f"{PACKAGE}.envd.protocol"}


def test_shared_packages_import_neither_side() -> None:
    graph = import_graph()
    for shared in ("agent_link", "wire"):
        for side in ("control_plane", "host_agent", "envd", "cli"):
            found = imports_of(graph, f"{PACKAGE}.{shared}", f"{PACKAGE}.{side}")
            if side == "envd":
                found = {m: deps - ENVD_CONSTANTS for m, deps in found.items() if deps - ENVD_CONSTANTS}
            assert found == {}, (shared, side)


def test_envd_constants_module_imports_nothing_of_the_platform() -> None:
    assert imports_of(import_graph(), f"{PACKAGE}.envd.protocol", PACKAGE) == {}


def test_host_agent_does_not_import_the_control_plane() -> None:
    assert imports_of(import_graph(), f"{PACKAGE}.host_agent", f"{PACKAGE}.control_plane") == {}


def test_no_import_cycle_between_the_top_level_packages() -> None:
    top: Graph = {}
    for module, deps in import_graph().items():
        side = ".".join(module.split(".")[:2])
        top.setdefault(side, set()).update(".".join(d.split(".")[:2]) for d in deps)
    for side in top:
        top[side].discard(side)
    top.pop(PACKAGE, None)
    for deps in top.values():
        deps.discard(PACKAGE)
    assert cycles(top) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_a_planted_cycle_and_a_planted_import(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    for folder in ("control_plane", "host_agent"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "control_plane" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "control_plane" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom .a import f\nif TYPE_CHECKING:\n    from ..host_agent import x\n")
    (pkg / "control_plane" / "c.py").write_text("from wrenn_platform.host_agent.x import thing\n")
    (pkg / "host_agent" / "x.py").write_text("thing = 1\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [[f"{PACKAGE}.control_plane.a", f"{PACKAGE}.control_plane.b"]]
    assert imports_of(graph, f"{PACKAGE}.control_plane", f"{PACKAGE}.host_agent") == {
        f"{PACKAGE}.control_plane.c": {f"{PACKAGE}.host_agent", f"{PACKAGE}.host_agent.x"}}
