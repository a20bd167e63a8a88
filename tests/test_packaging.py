"""Packaging checks: setup.cfg and environment.yml declare the same dependencies."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    req = req.strip()
    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
    assert m, f"unparsable requirement {req!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return name, m.group(2).replace(" ", "")


def _setup_cfg_requirements() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].strip().splitlines()
    lines += cfg["options.extras_require"]["test"].strip().splitlines()
    return dict(_norm(line) for line in lines if line.strip() and not line.strip().startswith("#"))


def _environment_yml_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml must have exactly one pip section"
    return dict(_norm(line) for line in pip[0])


def test_setup_cfg_and_environment_yml_agree():
    a, b = _setup_cfg_requirements(), _environment_yml_requirements()
    assert a == b, (
        f"only in setup.cfg: {sorted(set(a.items()) - set(b.items()))}; "
        f"only in environment.yml: {sorted(set(b.items()) - set(a.items()))}"
    )


def test_core_install_is_free_of_monai_label_pins():
    core = _setup_cfg_requirements()
    for pinned in ("monailabel", "pydicom", "dicomweb-client", "pynetdicom"):
        assert pinned not in core, f"{pinned} belongs in the optional [label] extra, not the core install"


def test_python_requirement():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options"]["python_requires"].strip() == ">=3.10"
