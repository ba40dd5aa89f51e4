"""The code's shape, checked: no function over 60 lines, no import cycle inside the library, one CLI module per
command group. (Issue 11: these grew by copy once; a test keeps them from growing back.)"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tanas_core"
SOURCES = sorted(PACKAGE.rglob("*.py")) + [REPO / "app.py"] + sorted((REPO / "pages").glob("*.py"))
MAX_FUNCTION_LINES = 60


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(REPO)}:{line} {name} ({length} lines)" for path in SOURCES
            for name, line, length in _functions(path) if length > MAX_FUNCTION_LINES]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every tanas_core module ``path`` imports, at the top or inside a function (a lazy import is still a cycle)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith("tanas_core"))
    return found


def test_the_library_has_no_import_cycle():
    modules = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph = {name: {target for target in _imports(path, name) if target in modules and target != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle between ideas
    graph = {name: {t for t in targets if not (path.name == "__init__.py" and t.startswith(name + "."))}
             for (name, targets), path in zip(graph.items(), modules.values())}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cli_is_a_package_with_one_module_per_command_group():
    cli = PACKAGE / "cli"
    assert cli.is_dir() and not (PACKAGE / "cli.py").exists()
    for group in ("data", "tasks", "zoo", "distance", "search", "bench"):
        source = (cli / f"{group}.py").read_text()
        assert "def register(" in source, f"cli/{group}.py has no register(subparsers)"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent == PACKAGE or p.parent.parent == PACKAGE],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_public_functions_have_docstrings(path):
    tree = ast.parse(path.read_text())
    missing = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
               and not node.name.startswith("_") and ast.get_docstring(node) is None]
    assert not missing, f"{path.name}: public functions without a docstring: {missing}"
