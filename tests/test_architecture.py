"""The layered house (docs/architecture.md): contracts checked by import-linter, and no
function-level import of eulc modules outside the application layer, where an edge could hide
from a reader (import-linter sees them too; the application defers heavy imports on purpose)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "tiles", "model", "gee_scripts", "openeo_scripts")


def _lazy_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.split(".")[0] in PACKAGES:
                    out.append(f"{path.relative_to(ROOT)}:{sub.lineno} {node.name}() imports {sub.module}")
    return out


def test_no_hidden_imports_below_the_application() -> None:
    found = [
        hit
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if not p.is_relative_to(ROOT / "pipeline" / "app")
        for hit in _lazy_imports(p)
    ]
    assert found == []


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a dev dependency: pip install -e '.[dev]'"
    p = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
    assert "BROKEN" not in p.stdout and p.stdout.count("KEPT") == 4


def test_mapping_and_bundles_load_without_scikit_learn() -> None:
    """`eulc map`, `eulc features` and every spec or bundle lookup (`pipeline.stages.resolve`)
    import neither scikit-learn nor XGBoost (about 2 s of each CLI call's start); the model
    modules import them where they fit or score, not at module level.
    """
    code = (
        "import sys, pipeline.stages.resolve, pipeline.stages.mapping, pipeline.stages.features, "
        "tiles.mapping.predict; print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'xgboost'}))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"
