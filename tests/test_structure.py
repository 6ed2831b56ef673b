"""The package's shape, read from its source with ``ast``: no import cycle, each floor imports only its own
floor and those below (docs/architecture.md), no module over ``MAX_MODULE_LINES`` lines, and no comparison
with a task or model-family name outside the registries that define them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "image2point"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
MAX_MODULE_LINES = 400
# Modules allowed over MAX_MODULE_LINES for now, each with the reason. An entry that is no longer over
# the limit fails the test, so the list only shrinks.
OVERSIZED_MODULES = {
    # Owned by the dataset redesign of issue 12 (part A), which moves its readers onto io/.
    "image2point/data/procedural.py": "dataset module under the data redesign",
    # io/ readers are reworked by the same part.
    "image2point/io/pcd.py": "io/ reader under the data redesign",
}
# Where task and model-family names may be compared with strings: the modules that define them.
NAME_REGISTRIES = ("image2point/tasks.py", "image2point/train/families/")
# Modules still comparing names for now, each with the reason; the list only shrinks, like OVERSIZED_MODULES.
NAME_COMPARISONS_ALLOWED: dict[str, str] = {}
# Floor of each top-level module or subpackage (docs/architecture.md): data flows up, from points to the
# command line; a module imports only from its own floor and those below.
FLOORS = {
    "errors": 1, "checkpoint": 1, "voxelize": 1, "sparse": 1, "models2d": 1, "io": 1,
    "viz": 1, "environment": 1, "tasks": 1, "channels": 1,
    "data": 2, "inflate": 2, "pretrain2d": 2,
    "models": 3,
    "train": 4,
    "inference": 5, "experiments": 5, "demo": 5,
    "cli": 6,
}


def module_paths() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.Module, deferred: bool) -> list[str]:
    """Modules named by the import statements a module runs when it is imported (``deferred``: also those
    inside functions and classes, run later). ``if TYPE_CHECKING`` blocks never run."""
    names: list[str] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
                names.append(node.module)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                continue
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if deferred:
                    visit(node.body)
            elif isinstance(node, ast.Try):
                visit([*node.body, *node.orelse, *node.finalbody,
                       *(statement for handler in node.handlers for statement in handler.body)])
            elif isinstance(node, (ast.If, ast.With, ast.For, ast.While)):
                visit([*node.body, *getattr(node, "orelse", [])])

    visit(tree.body)
    return names


def import_graph(deferred: bool) -> dict[str, set[str]]:
    """Module -> the package modules importing it runs (parent packages included, its own excluded)."""
    modules = module_paths()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(ast.parse(path.read_text(encoding="utf-8")), deferred):
            parts = imported.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                # Importing a sibling runs the parent package's __init__, which is already running.
                if target in modules and not (name == target or name.startswith(target + ".")):
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def floor_of(module: str) -> int | None:
    parts = module.split(".")
    return None if len(parts) == 1 else FLOORS.get(parts[1])


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph(deferred=False)) == []


def test_no_deferred_import_hides_a_cycle():
    """Imports inside functions (kept there to defer torch) must not close a cycle either."""
    assert cycles(import_graph(deferred=True)) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_every_module_has_a_floor_and_imports_nothing_above_it():
    graph = import_graph(deferred=True)
    unplaced = sorted(module for module in graph if module != PACKAGE and floor_of(module) is None)
    assert unplaced == [], "add these to FLOORS (and docs/architecture.md)"
    upward = sorted(f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)})"
                    for module, targets in graph.items() for target in targets
                    if module != PACKAGE and target != PACKAGE and floor_of(target) > floor_of(module))
    assert upward == []


def test_no_module_is_over_the_line_limit():
    root = PACKAGE_DIR.parent
    sizes = {path.relative_to(root).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in module_paths().values()}
    oversized = sorted(f"{name}: {lines} lines" for name, lines in sizes.items()
                       if lines > MAX_MODULE_LINES and name not in OVERSIZED_MODULES)
    assert oversized == []
    stale = sorted(name for name in OVERSIZED_MODULES if sizes.get(name, 0) <= MAX_MODULE_LINES)
    assert stale == [], "these are within the limit now: remove them from OVERSIZED_MODULES"


def registered_names() -> set[str]:
    from image2point.tasks import Task
    from image2point.train.families import MODEL_FAMILIES

    return {task.value for task in Task} | set(MODEL_FAMILIES)


def name_comparisons(tree: ast.Module, names: set[str]) -> list[int]:
    """Lines comparing with one of ``names`` as a string literal (``==``, ``!=``, ``in`` a literal collection)."""

    def literals(node: ast.expr) -> list[object]:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [value for element in node.elts for value in literals(element)]
        return [node.value] if isinstance(node, ast.Constant) else []

    return sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
                   and any(value in names for side in (node.left, *node.comparators) for value in literals(side))})


def test_no_string_comparison_on_task_or_family_names_outside_the_registries():
    root, names = PACKAGE_DIR.parent, registered_names()
    found = {}
    for path in module_paths().values():
        name = path.relative_to(root).as_posix()
        if not name.startswith(NAME_REGISTRIES):
            lines = name_comparisons(ast.parse(path.read_text(encoding="utf-8")), names)
            if lines:
                found[name] = lines
    assert sorted(name for name in found if name not in NAME_COMPARISONS_ALLOWED) == [], found
    stale = sorted(name for name in NAME_COMPARISONS_ALLOWED if name not in found)
    assert stale == [], "these compare no names any more: remove them from NAME_COMPARISONS_ALLOWED"


def test_the_comparison_finder_finds_comparisons():
    tree = ast.parse("a = task == 'segmentation'\nb = family in ('voxel', 'x')\nc = 'voxel'\nd = x != y\n")
    assert name_comparisons(tree, {"segmentation", "voxel"}) == [1, 2]
