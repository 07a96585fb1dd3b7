"""The library's layers import downward only, and no module imports itself through a cycle.

Every `import` of an `llp_jax` module counts, including those inside functions (a lazy import
still runs); only `if TYPE_CHECKING:` blocks, which never run, are left out.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

# Package -> layer. A module may import its own package or a package of a lower layer: never a
# higher layer, and never a sibling (training and evaluation do not import each other).
LAYERS = {
    "errors": 0,
    "caches": 0,
    "strict_json": 0,
    "schema": 1,
    "url_clients": 1,
    "backend": 1,
    "kernels": 1,
    "paths": 2,
    "models": 3,
    "data": 3,
    "storage": 3,
    "training": 4,
    "evaluation": 4,
    "interop": 4,
    "configs": 5,
    "studies": 6,
    "cli": 7,
}
FACADE = "llp_jax"  # llp_jax/__init__.py: loads subpackages on attribute access, by design


def _modules(root: str) -> dict[str, str]:
    """Dotted module name -> file, for every .py under llp_jax/."""
    out = {}
    for folder, _, files in os.walk(os.path.join(root, "llp_jax")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def _runtime_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import outside `if TYPE_CHECKING:` blocks."""
    found = []

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: str = REPO) -> dict[str, set[str]]:
    """Module -> the llp_jax modules it imports at run time."""
    modules = _modules(root)
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for target, names in _runtime_imports(tree):
            if not target.startswith("llp_jax"):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            edges.update(subs or [target])
        graph[module] = edges - {module}
    return graph


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        if module == FACADE:
            continue
        own = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other is None or other == own:
                continue
            if LAYERS[other] >= LAYERS[own]:
                bad.append(f"{module} -> {target} ({own} may not import {other})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules that import each other."""
    found, state, stack = [], {}, []

    def dfs(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state and node != FACADE:
            dfs(node)
    return found


def test_every_package_has_a_layer():
    packages = {layer_of(m) for m in _modules(REPO)} - {None}
    assert packages <= set(LAYERS), f"give {packages - set(LAYERS)} a layer in LAYERS"


def test_layers_import_downward_only():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles({k: v for k, v in import_graph().items() if k != FACADE}) == []


def test_the_checks_catch_what_they_look_for():
    """The checkers flag a planted upward import, a sibling import and a cycle."""
    graph = {
        "llp_jax.evaluation.a": {"llp_jax.training.b"},  # sibling
        "llp_jax.models.c": {"llp_jax.studies.d"},  # upward
        "llp_jax.data.e": {"llp_jax.data.f"},
        "llp_jax.data.f": {"llp_jax.data.e"},  # cycle
    }
    assert len(upward_imports(graph)) == 2
    assert cycles(graph) == [["llp_jax.data.e", "llp_jax.data.f", "llp_jax.data.e"]]
    lazy = ast.parse("def f():\n    from llp_jax.training import trainer\n")
    assert _runtime_imports(lazy) == [("llp_jax.training", ["trainer"])]
    typed = ast.parse("if TYPE_CHECKING:\n    from llp_jax.studies import x\n")
    assert _runtime_imports(typed) == []


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_package_is_importable_alone(package):
    """Each layer imports on its own, in a fresh interpreter."""
    code = f"import llp_jax.{package}"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
