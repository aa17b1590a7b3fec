"""Apply each of the seven named mutants of issue #26 to a copy of the checkout and run the test
that must kill it (``tests/test_mutants.py``); print one line per mutant and exit 1 if any
survives.

    python scripts/mutants.py            # all seven, ~1.5 min on 2 cores
    python scripts/mutants.py 3 5        # some of them
    python scripts/mutants.py --control  # the same runs without the mutation: every test passes

The copy lives in a temporary folder (the checkout is never edited); the real data are read
from ``EULC_DATA`` or the checkout's ``../shared/data``. The broad mutation run over whole
modules is cosmic-ray's (``docs/robustness.md``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MUTANTS: dict[int, tuple[str, str, str, str]] = {
    # n: (file, original text, mutated text, test that must fail)
    1: (
        "gee_scripts/images.py",
        'col = col.filter(ee.Filter.eq("orbitProperties_pass", orbit))',
        'col = col.filter(ee.Filter.neq("orbitProperties_pass", orbit))',
        "test_mutant_1_the_orbit_filter_keeps_the_pass_it_names",
    ),
    2: (
        "model/evaluate.py",
        "prior = np.bincount(ds.y[split.train], minlength=len(names)) / len(split.train)",
        "prior = np.bincount(ds.y[split.test], minlength=len(names)) / len(split.test)",
        "test_mutant_2_the_em_prior_comes_from_the_training_labels",
    ),
    3: (
        "model/ood.py",
        "whitener = evecs[:, :r] / np.sqrt(evals[:r])",
        "whitener = evecs[:, -r:] / np.sqrt(evals[-r:])",
        "test_mutant_3_the_ood_distance_uses_the_smallest_variance_directions",
    ),
    4: (
        "pipeline/core/atomic.py",
        "            yield tmp_path\n",
        "            yield dest\n",
        "test_mutant_4_the_writer_never_touches_dest_before_the_rename",
    ),
    5: (
        "pipeline/core/ledger.py",
        "        and outputs_intact(root, entry.outputs)\n",
        "        and True\n",
        "test_mutant_5_a_changed_output_is_not_current",
    ),
    6: (
        "model/infer.py",
        '        raise EulcError(f"`precision` {precision!r} is not a choice", '
        "f\"Use one of {', '.join(PRECISIONS)}\")",
        '        precision = "auto"',
        "test_mutant_6_an_unknown_precision_is_refused_everywhere",
    ),
    7: (
        "tiles/mapping/predict.py",
        "for b in (self.bundle, self.level2) if b is not None]",
        "for b in (self.bundle,) if b is not None]",
        "test_mutant_7_a_level2_bundles_features_are_checked",
    ),
}


def run(n: int, data: Path, control: bool = False) -> bool:
    """True if mutant ``n`` is killed (its test fails on the mutated copy); with ``control`` the
    copy is left as it is (the test must then pass: a kill is not an artefact of the copy).
    """
    rel, old, new, test = MUTANTS[n]
    if control:
        new = old
    with tempfile.TemporaryDirectory(prefix=f"eulc-mutant-{n}-") as tmp:
        copy = Path(tmp) / "eulc"
        shutil.copytree(
            ROOT,
            copy,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "__pycache__", "out", "*.egg-info", ".mypy_cache", ".ruff_cache", ".pytest_cache"
            ),
        )
        src = (copy / rel).read_text()
        if src.count(old) != 1:
            raise SystemExit(f"mutant {n}: the original text is not found once in {rel}; update scripts/mutants.py")
        (copy / rel).write_text(src.replace(old, new))
        env = {**os.environ, "EULC_DATA": str(data), "PYTHONPATH": str(copy)}
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"tests/test_mutants.py::{test}"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
        )
        killed = p.returncode != 0 and "passed" not in p.stdout.splitlines()[-1]
        print(f"mutant {n} ({rel}): {'killed' if killed else 'SURVIVED'} by {test}", flush=True)
        return killed


def main() -> None:
    """Run the mutants named on the command line (default: all); exit 1 if any survives."""
    data = Path(os.environ.get("EULC_DATA") or ROOT.parent / "shared" / "data")
    if not data.is_dir():
        raise SystemExit(f"no shared data at {data}: set EULC_DATA")
    control = "--control" in sys.argv
    chosen = [int(a) for a in sys.argv[1:] if a != "--control"] or sorted(MUTANTS)
    killed = [n for n in chosen if run(n, data, control)]
    if control:
        print(f"control: {len(chosen) - len(killed)} of {len(chosen)} unmutated copies pass their test")
        sys.exit(1 if killed else 0)
    print(f"{len(killed)} of {len(chosen)} named mutants killed")
    sys.exit(0 if len(killed) == len(chosen) else 1)


if __name__ == "__main__":
    main()
