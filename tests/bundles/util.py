"""Helpers for the bundle tests: run ``monai.bundle`` commands as a user would (subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
NAMES = ("msa2net", "sa2net", "afma", "svanet", "msga")
PAPER_DATASET = {"msa2net": "synapse", "sa2net": "acdc", "afma": "lits", "svanet": "lits", "msga": "synapse"}

# Tiny settings for CPU tests (64x64 input, reduced widths where a network is large).
TINY: dict[str, dict[str, Any]] = {
    "msa2net": {"roi_size": "[64,64]"},
    "sa2net": {"roi_size": "[64,64]", "network_def#features": "16"},
    "afma": {"roi_size": "[64,64]", "encoder_name": "resnet18"},
    "svanet": {"roi_size": "[64,64]", "network_def#base_width": "16"},
    "msga": {"roi_size": "[64,64]", "network_def#backbone": "resnet50", "network_def#features": "16"},
}


def configs(name: str, *files: str) -> str:
    return "[" + ",".join(f"'{BUNDLES / name / 'configs' / f}'" for f in files) + "]"


def flags(overrides: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in overrides.items():
        out += [f"--{k}", str(v)]
    return out


def bundle_cmd(command: str, name: str, files: Sequence[str], run_id: str | None = None, **overrides: Any) -> list[str]:
    cmd = [sys.executable, "-m", "monai.bundle", command]
    if run_id:
        cmd.append(run_id)
    cmd += ["--meta_file", str(BUNDLES / name / "configs" / "metadata.json"),
            "--config_file", configs(name, *files)]
    if command == "run":
        cmd += ["--logging_file", str(BUNDLES / name / "configs" / "logging.conf")]
    cmd += ["--bundle_root", str(BUNDLES / name)]
    return cmd + flags(overrides)


def run(cmd: list[str], timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )
    return proc


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
