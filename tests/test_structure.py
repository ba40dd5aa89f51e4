"""The code's shape, checked: packages in pipeline order with no import running upward, no import cycle, no function
over 60 lines, no module over 360 lines, one CLI module per command group, docstrings on public functions, and the
linter (``ruff.toml``) clean."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tanas_core"
SOURCES = sorted(PACKAGE.rglob("*.py")) + [REPO / "app.py"] + sorted((REPO / "app_pages").glob("*.py"))
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 360
# The package's layers, lowest first: a module may import its own layer and the layers below it, never one above.
# The method (requests .. search) never imports the jobs, the app, the lab (bench) or the command line.
LAYERS = (("errors", "intervals", "registry"), ("requests",), ("data",), ("networks",), ("workspace",), ("training",),
          ("fisher",), ("distances",), ("search",), ("jobs",), ("app",), ("bench",), ("cli", "__main__"))
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
PIPELINE = ("data", "networks", "training", "fisher", "distances", "search")


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


def test_no_module_is_longer_than_360_lines():
    long = [f"{path.relative_to(REPO)} ({length} lines)" for path in SOURCES
            if (length := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, "split these by concern:\n" + "\n".join(long)


def test_the_linter_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "tanas_core", "app_pages", "tests",
                             "app.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ruff check (ruff.toml):\n{result.stdout}{result.stderr}"


def test_the_package_is_one_folder_per_pipeline_stage_and_every_module_has_a_layer():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert set(PIPELINE) <= folders, f"missing stage packages: {set(PIPELINE) - folders}"
    top = {path.name.split(".")[0] for path in PACKAGE.iterdir()
           if path.suffix == ".py" or (path / "__init__.py").exists()} - {"__init__"}
    assert top <= set(LEVEL), f"give these a layer in LAYERS: {sorted(top - set(LEVEL))}"


def test_no_import_runs_upward_and_the_method_never_imports_jobs_app_bench_or_cli():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module == "tanas_core":
            continue
        layer = module.split(".")[1]
        for target in sorted(_imports(path, module)):
            parts = target.split(".")
            if len(parts) > 1 and parts[1] in LEVEL and LEVEL[parts[1]] > LEVEL[layer]:
                upward.append(f"{module} ({layer}) imports {target} ({parts[1]})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_the_cli_is_a_package_with_one_module_per_command_group():
    cli = PACKAGE / "cli"
    assert cli.is_dir() and not (PACKAGE / "cli.py").exists()
    for group in ("data", "tasks", "zoo", "distance", "validate", "search", "workspace", "bench"):
        source = (cli / f"{group}.py").read_text()
        assert "def register(" in source, f"cli/{group}.py has no register(subparsers)"


@pytest.mark.parametrize("path", [p for p in SOURCES if PACKAGE in p.parents],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_public_functions_have_docstrings(path):
    tree = ast.parse(path.read_text())
    missing = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
               and not node.name.startswith("_") and ast.get_docstring(node) is None]
    assert not missing, f"{path.name}: public functions without a docstring: {missing}"


def test_the_suites_openmp_spin_is_set_before_torch_loads():
    """libgomp reads GOMP_SPINCOUNT once, when torch loads it: conftest must set it before its first torch import
    (without a caller's own setting), or the suite's pinned threads spin on a busy machine (``bench load --job
    tests``)."""
    probe = ("import importlib.abc, os, sys\n"
             "seen = []\n"
             "class Watch(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path, target=None):\n"
             "        if name == 'torch' and not seen:\n"
             "            seen.append(os.environ.get('GOMP_SPINCOUNT'))\n"
             "sys.meta_path.insert(0, Watch())\n"
             "sys.path.insert(0, 'tests')\n"
             "import conftest\n"
             "from tanas_core.bench.load import SHORT_SPIN\n"
             "assert seen == [SHORT_SPIN], seen\n")
    env = {name: value for name, value in os.environ.items() if name != "GOMP_SPINCOUNT"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
