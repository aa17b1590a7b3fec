"""`benchmarks/gpu_check.py` runs end to end here (on the CPU, saying no GPU was found; with
``--smoke``, a 2 km tile and 8,000 training rows), so the CUDA check is known to work before a
GPU machine runs it (issue #16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_and_reports_every_figure(data: Path, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n")
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--results", str(results), "--smoke"],
        capture_output=True,
        text=True,
        timeout=480,
        env=os.environ.copy(),
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("gpu_check ")]
    figures = {ln.split()[1] for ln in lines}
    assert figures == {"device", "model_only", "end_to_end", "eulc_map", "train_epoch", "reduction", "total"}
    import torch

    if not torch.cuda.is_available():
        assert "no_CUDA_GPU_found" in lines[0]
    assert "done=4 failed=0" in next(ln for ln in lines if " eulc_map " in ln)
    assert "px=40000" in next(ln for ln in lines if " end_to_end " in ln)  # --smoke: a 2 km tile
    assert "rows=7" in next(ln for ln in lines if " train_epoch " in ln)  # --smoke: 8,000 rows less the unusable
    if not torch.cuda.is_available():  # torch on the CPU: the numpy engine's values, bit for bit
        assert "equal=1 " in next(ln for ln in lines if " reduction " in ln) + " "
    text = results.read_text()
    assert text.startswith("# results\n") and all(ln in text for ln in lines)  # appended, not replaced
