"""Structure the design promises: no import cycles, self-contained model files, a dispatch-only compute_loss."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.trainer import FairMTLTrainer

PACKAGE = Path(__file__).resolve().parents[1] / "hf_fairmtl"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """`(absolute module, imported names)` of the imports that run when the module is imported."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in top_level_imports(path):
            for candidate in [target, *(f"{target}.{n}" for n in names)]:
                # A package importing its own submodules is how packages work, not a cycle.
                if candidate in modules and not candidate.startswith(name + "."):
                    graph[name].add(candidate)
    return graph


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, [" -> ".join(cycle) for cycle in cycles]


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = [
        f"{module_name(path)}: {target}.{name}"
        for path in PACKAGE.rglob("*.py")
        for target, names in top_level_imports(path)
        for name in names
        if target.startswith("hf_fairmtl") and name.startswith("_") and not name.startswith("__")
    ]
    assert not offenders, offenders


SHIPPED_FILES = ("configuration_fairmtl.py", "modeling_fairmtl.py", "pipelines.py", "feature_encoding.py")


def test_files_shipped_with_checkpoints_import_only_each_other() -> None:
    """Copied next to checkpoints for trust_remote_code, where hf_fairmtl may not be installed."""
    allowed = {f"hf_fairmtl.{Path(name).stem}" for name in SHIPPED_FILES}
    for name in SHIPPED_FILES:
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = f"hf_fairmtl.{node.module}" if node.module else "hf_fairmtl"
                assert target in allowed, f"{name} imports {target}"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_fairmtl"):
                raise AssertionError(f"{name} imports {node.module}")


def test_compute_loss_is_short_and_names_no_strategy() -> None:
    source = textwrap.dedent(inspect.getsource(FairMTLTrainer.compute_loss))
    assert len(source.splitlines()) <= 40
    strings = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)}
    assert not strings & set(STRATEGIES), strings & set(STRATEGIES)


def test_importing_the_package_leaves_heavy_optional_modules_alone() -> None:
    code = (
        "import sys, hf_fairmtl\n"
        "heavy = [m for m in ('folktables', 'matplotlib', 'fairlearn', 'hf_fairmtl.data.census', "
        "'hf_fairmtl.data.folktables_acs', 'hf_fairmtl.experiments') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout
