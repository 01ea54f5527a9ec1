"""The fitting room's imports flow one way: pipeline -> analyses -> judge -> inference ->
settings, with no cycle and no library module importing a command-line module.

Every module is parsed with ``ast`` (nothing is imported), and every import counts,
including those inside functions (where most of the fitting room's imports live, to keep
``import valuedyn.fitting`` free of JAX).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import valuedyn.fitting
import valuedyn.papers

PACKAGE = "valuedyn.fitting"
ROOT = Path(valuedyn.fitting.__file__).parent

#: sub-room -> its place in the one-way order (a module imports only its own room and lower)
ORDER = {"settings": 0, "inference": 1, "judge": 2, "analyses": 3, "pipeline": 4}


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {_module_name(path, root, package): path for path in sorted(root.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that module ``name`` imports anywhere in its body (``from P
    import X`` counts as importing ``P.X`` when that is a module, else ``P``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` names a.b.c; count the deepest known module it names
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = _modules(root, package)
    known = set(modules) | set(_modules(ROOT, PACKAGE))
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _room(module: str) -> str | None:
    """The sub-room of a fitting module (None for the package's own ``__init__``, the facade above them all)."""
    if module == PACKAGE:
        return None
    return module[len(PACKAGE) + 1:].split(".")[0]


def _is_cli(module: str) -> bool:
    return module.rpartition(".")[2].endswith("_cli") or module.rpartition(".")[2] == "cli"


GRAPH = _graph(ROOT, PACKAGE)


def test_every_module_is_in_a_room():
    rooms = {_room(m) for m in GRAPH} - {None}
    assert rooms == set(ORDER), f"modules outside the sub-rooms {sorted(ORDER)}: {sorted(rooms - set(ORDER))}"


def test_no_import_cycle():
    # the package's own __init__ re-exports every room (it is the facade, above them all):
    # an edge into it from a room would be the cycle, and test_no_upward_import names it
    graph = {m: {t for t in targets if t != PACKAGE} for m, targets in GRAPH.items() if m != PACKAGE}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_upward_import():
    upward = []
    for module, targets in GRAPH.items():
        room = _room(module)
        if room is None:
            continue
        for target in targets:
            target_room = _room(target)
            if target_room is None or ORDER[target_room] > ORDER[room]:
                upward.append(f"{module} ({room}) imports {target} ({target_room or 'the package facade'})")
    assert not upward, "imports against pipeline -> analyses -> judge -> inference -> settings:\n" + "\n".join(upward)


@pytest.mark.parametrize("room_package, root", [(PACKAGE, ROOT), ("valuedyn.papers", Path(valuedyn.papers.__file__).parent)])
def test_no_library_module_imports_a_command_line_module(room_package, root):
    graph = GRAPH if room_package == PACKAGE else _graph(root, room_package)
    # papers' facade re-exports its commands' configs and run_figures as its public API (its
    # shape is the notebook API's business); every other papers module is library code
    facades = {"valuedyn.papers"}
    offenders = [f"{module} imports {target}" for module, targets in graph.items()
                 if not _is_cli(module) and module not in facades for target in targets if _is_cli(target)]
    assert not offenders, "library modules importing command-line modules:\n" + "\n".join(offenders)


def test_the_settings_import_nothing_of_the_fitting_room_and_no_jax():
    import subprocess
    import sys

    assert GRAPH[f"{PACKAGE}.settings"] == set()
    code = ("import sys, valuedyn.fitting.settings, valuedyn.fitting; "
            "print(sorted(m for m in ('jax', 'numpyro', 'arviz') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing the settings (or valuedyn.fitting) loaded {loaded}"


def test_the_graph_sees_imports_inside_functions():
    # _batch imports the fit only inside the worker function; the walk must see it
    assert f"{PACKAGE}.inference._fit" in GRAPH[f"{PACKAGE}.pipeline._batch"]
