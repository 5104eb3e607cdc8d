"""The layout's promises, read from the source with `ast`: no import cycle, packages that
import one way, and modules and functions of a readable size.

The import graph counts every `import` and `from ... import` of a `logclust` module,
at module level and inside functions (an import deferred to a call still ties the two
modules), but not those under `if TYPE_CHECKING:` (never run). `from pkg import name`
imports `pkg` (its `__init__` runs and is read) and also `pkg.name` when that is a module;
`import a.b.c` imports `a.b.c`. A package's `__init__` is the module named after the
package. The imports of parent packages that Python runs on the way (every module has
them) are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "logclust"
ROOT = "<root>"  # `logclust/__init__.py` and the modules directly under `logclust/`
# Bottom to top: a package imports only packages of lower layers (and itself).
# text -> embed -> cluster -> sidecar -> server, with the contract and the latency book
# below them and the client, CLI and the lazy top-level facade (`logclust.__init__`) above.
LAYERS: list[set[str]] = [
    {"proto", "turns"},
    {"wire"},
    {"rpc"},
    {"text", "latency"},
    {"embed"},
    {"cluster"},
    {"sidecar", "archive"},
    {"otlp", "web"},
    {"server"},
    {"client"},
    {"cli"},
    {ROOT},
]
# The client depends on the wire contract, the generated stubs and the shared credential
# and status helpers (`rpc`), never on server code.
CLIENT_MAY_IMPORT = {"client", "wire", "proto", "rpc"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` under `package` (a package's
    `__init__.py` under the package's own name)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def _imported(name: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that the import statement `node` in module `name` imports."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:  # relative: from the module's package, up `level - 1` packages
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return {source} | {f"{source}.{a.name}" for a in node.names}


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (see the module docstring)."""
    modules = module_files(package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        found: set[str] = set()
        for node in _runtime_nodes(tree):
            found |= _imported(name, path, node, modules)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`[a, b, ..., a]`) through each strongly connected component of more
    than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            nxt = next(successors, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_cycle_in(graph, c) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module (by name) of a strongly connected
    `component` (breadth-first search back to it)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    back = [node]  # node, its parent, ..., start
                    while back[-1] != start:
                        back.append(parent[back[-1]])
                    return [*reversed(back), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"not strongly connected: {sorted(component)}")


def package_of(module: str) -> str:
    """`logclust.server.app` -> `server`; `logclust` and `logclust.turns` are their own."""
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT
    return parts[1]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point down the layers, or from the client into server code."""
    rank = {p: i for i, layer in enumerate(LAYERS) for p in layer}
    bad = []
    for module, imports in sorted(graph.items()):
        mine = package_of(module)
        for target in sorted(imports):
            theirs = package_of(target)
            if theirs == mine:
                continue
            upward = rank.get(theirs, len(LAYERS)) >= rank.get(mine, -1)
            from_client = mine == "client" and theirs not in CLIENT_MAY_IMPORT
            if upward or from_client:
                bad.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return bad


# -- the helpers on a package made for them ------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_graph_sees_function_level_package_and_relative_imports(tmp_path: Path) -> None:
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "def f():\n    from pkg.a import x\n",
            "pkg/a.py": "from pkg import b\nfrom . import c\nx = 1\n",
            "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\n",
            "pkg/c.py": "import os\nimport pkg.sub.d\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from ..b import x\n",
        },
    )
    graph = import_graph(pkg)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg", "pkg.b", "pkg.c"},
        "pkg.b": set(),
        "pkg.c": {"pkg.sub.d"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.b"},
    }
    assert cycles(graph) == [["pkg", "pkg.a", "pkg"]]


def test_cycles_are_reported_as_paths() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_catch_a_downward_import_and_the_client_reaching_into_the_server() -> None:
    graph = {
        "logclust.text.masking": {"logclust.cluster.labeler"},
        "logclust.client.client": {"logclust.wire.ipc", "logclust.sidecar.core"},
        "logclust.cli.main": {"logclust.server.app", "logclust.client"},
        "logclust.server.app": {"logclust.sidecar.core", "logclust.cli.main"},
    }
    assert layer_violations(graph) == [
        "logclust.client.client -> logclust.sidecar.core (client may not import sidecar)",
        "logclust.server.app -> logclust.cli.main (server may not import cli)",
        "logclust.text.masking -> logclust.cluster.labeler (text may not import cluster)",
    ]


# -- logclust itself -----------------------------------------------------------------------


def test_every_package_has_a_layer() -> None:
    known = set().union(*LAYERS)
    assert {package_of(m) for m in module_files(PACKAGE)} <= known


def test_no_import_cycle() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_packages_import_one_way() -> None:
    bad = layer_violations(import_graph(PACKAGE))
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_cli_demos_import_each_other_one_way() -> None:
    graph = import_graph(PACKAGE)
    assert "logclust.cli.otlp_demo" in graph["logclust.cli.demo"]  # deferred: optional extra
    assert "logclust.cli.demo" not in graph["logclust.cli.otlp_demo"]


def _sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_pb2" not in path.name:  # generated protobuf code
            yield path, path.read_text()


def test_no_module_over_the_line_limit() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p, text in _sources()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_the_line_limit() -> None:
    long = {}
    for path, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
