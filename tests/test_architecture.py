"""The shape of the package: layers without upward imports or cycles, light imports, the
public API, and Optuna's private names in one place."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import bsopt
from bsopt import internals
from tests.helpers import REPO

PACKAGE = REPO / "bsopt"
# Leaves: imported by every layer, importing only each other.
LEAVES = {"errors", "records", "config", "catalog", "import_path", "internals", "interrupts",
          "network", "script", "text"}
# layer -> the layers it may import (besides itself and the leaves)
ALLOWED = {
    "training": set(),
    "storage": set(),
    "analysis": set(),
    "search": {"storage", "training"},
    "visualization": {"analysis", "storage"},
    "launch": {"storage", "search"},
    "integrations": set(),  # adapters to other frameworks (Lightning): the leaves only
    "cli": {"training", "storage", "analysis", "search", "visualization", "launch"},
}
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else ""
    return "leaf" if part in LEAVES else part or "top"


def imports(path: Path) -> set[str]:
    """The bsopt modules ``path`` imports anywhere (functions included), type-only ones not."""
    tree = ast.parse(path.read_text())
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test)
                 for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("bsopt.") and (
            (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists()
            or (PACKAGE.parent / n.replace(".", "/") / "__init__.py").exists())}
    return found


GRAPH = {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_no_layer_imports_one_above_it() -> None:
    upward = []
    for module, targets in GRAPH.items():
        here = layer(module)
        if here in ("top", "__main__") or module == "bsopt.__main__":
            continue
        allowed = {here, "leaf"} | (set() if here == "leaf" else ALLOWED[here])
        upward += [f"{module} -> {t}" for t in targets if layer(t) not in allowed]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    # A package's __init__ re-exports its modules; a module importing its own package
    # (rather than the sibling module) would close a loop through it.
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in GRAPH.get(module, ()):
            if state[target] == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif state[target] == 0:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


def test_modules_are_short() -> None:
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("code, absent", [
    # Training is PyTorch only: the loop can be read and reused without studies.
    ("import bsopt.training, bsopt.training.profile", "optuna"),
    # Opening, reading and analysing studies does not wait for torch to import.
    ("import bsopt, bsopt.search, bsopt.storage, bsopt.analysis, bsopt.visualization, "
     "bsopt.cli", "torch"),
    # `import bsopt` in a user's training script is instant (bsopt.report and the API).
    ("import bsopt", "optuna"),
    # Launching on Slurm needs neither Ray nor (until the study is made) torch.
    ("import bsopt.launch, bsopt.cli.launch", "ray"),
    ("import bsopt.launch, bsopt.cli.launch", "torch"),
])
def test_layers_import_only_what_they_need(code: str, absent: str) -> None:
    check = (f"import sys\n{code}\n"
             f"sys.exit(3 if any(m == {absent!r} or m.startswith({absent + '.'!r})"
             " for m in sys.modules) else 0)\n")
    assert subprocess.run([sys.executable, "-c", check], timeout=120).returncode == 0


def test_the_public_api_and_the_version() -> None:
    for name in bsopt.__all__:
        assert getattr(bsopt, name) is not None
    assert {"search", "StudyConfig", "build_config", "analyze", "UsageError"} <= set(bsopt.__all__)
    from importlib.metadata import version

    assert bsopt.__version__ == version("bsopt")
    out = subprocess.run([sys.executable, "-m", "bsopt", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"bsopt {bsopt.__version__}"


def test_every_rdb_storage_call_that_reaches_the_database_is_retried() -> None:
    from optuna.storages import RDBStorage

    from bsopt.storage.retries import ResilientRDBStorage

    public = {n for n, _ in inspect.getmembers(RDBStorage, callable) if not n.startswith("_")}
    wrapped = set(vars(ResilientRDBStorage))
    unknown = public - wrapped - set(internals.RDB_PUBLIC_NOT_RETRIED)
    assert unknown == set(), "a new RDBStorage method: retry it, or say why not in internals"
    assert set(internals.RDB_PRIVATE_CALLS) <= wrapped
    for name in internals.RDB_PRIVATE_CALLS:  # still there, under those names
        assert callable(getattr(RDBStorage, name))


def test_private_optuna_names_appear_only_in_internals() -> None:
    private = ("._storage", "._study_id", "._trial_id", '"retry_history"', '"failed_trial"',
               "_get_fused_kernels_supported_devices")
    found = [f"{p.relative_to(REPO)}: {name}" for p in PACKAGE.rglob("*.py")
             if p.name != "internals.py" for name in private if name in p.read_text()]
    assert found == []
