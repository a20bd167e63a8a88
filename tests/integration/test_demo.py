"""The demo entry point (``svseg demo``, here ``python -m svseg.cli demo``), on the tiny demo set with a 4-iteration schedule (slow).

Real data: the tiny (4 mm) svseg demo set. This checks the plumbing (data, training with the
demo override, 3D evaluation, printed report); the 0.80 Dice target applies to the full demo.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_module_runs_and_reports(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="1", SVSEG_DATA_DIR=str(tmp_path / "data"), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "svseg.cli", "demo", "--output", str(out), "--tiny",
                           "--max-iterations", "4", "--num-threads", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mean 3D Dice grey matter" in proc.stdout and "wall time" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary
    assert (out / "metrics.csv").is_file() and (out / "progress.png").is_file()
    assert (out / "models" / "model.pt").is_file()
