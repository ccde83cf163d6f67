"""The import rules of docs/design.md ("Layers"), enforced: each package of rnnedge may import only the packages
listed for it (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rnnedge"
BASE = {"errors", "atomic", "digest", "bundle", "console"}  # the contract and its helpers: every stage may use them
ALLOWED = {
    "data": BASE | {"data"},
    "tasks": BASE | {"data", "tasks"},
    "training": BASE | {"data", "tasks", "training"},
    "runtime": BASE | {"runtime"},
    "export": BASE | {"data", "tasks", "training", "runtime", "export"},
    "devices": BASE | {"data", "tasks", "training", "runtime", "devices", "choices"},
    "monitor": BASE | {"data", "tasks", "runtime", "devices", "monitor", "choices"},
    "evaluate": BASE | {"data", "tasks", "training", "runtime", "evaluate", "choices"},
    "fleet": BASE | {"runtime", "monitor", "fleet", "choices"},
    "choices": BASE | {"runtime", "choices"},  # the CLI's option values, from the runtime's registries
}
ALLOWED |= {name: BASE for name in BASE}
ENTRY_POINTS = {"fleet/submit.py"}  # `flink run -pym rnnedge.fleet.submit` starts the CLI, as `rnnedge` does


def _stage(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def _imported_stages(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "rnnedge" and len(parts) > 1:
                stages.add(parts[1])
            elif parts[0] == "rnnedge" and isinstance(node, ast.ImportFrom):
                stages |= {a.name for a in node.names}
    return stages


def test_every_package_imports_only_what_the_design_allows():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        stage = _stage(path)
        if stage in ("__init__", "cli", "__main__"):
            continue  # the package root and the CLI wire every stage together
        extra = _imported_stages(path) - ALLOWED[stage]
        if str(path.relative_to(ROOT)) in ENTRY_POINTS:
            extra -= {"cli"}
        wrong += [f"{path.relative_to(ROOT.parent)} imports rnnedge.{name}" for name in sorted(extra)]
    assert not wrong, "\n".join(wrong)


def test_runtime_never_imports_torch_or_training():
    for path in (ROOT / "runtime").rglob("*.py"):
        source = path.read_text()
        assert "import torch" not in source and "from torch" not in source, path
