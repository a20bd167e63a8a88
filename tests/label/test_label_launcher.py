"""The MONAI Label launcher's command line (no server; runs in the default test environment)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from svseg.label.server import build_app_dir, start_command


def test_default_binds_loopback(tmp_path):
    (tmp_path / "studies").mkdir()
    cmd = start_command(str(tmp_path / "studies"), app_dir=str(tmp_path / "app"))
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--uvicorn_app") + 1] == "svseg.label.asgi:app"
    assert "from svseg.label.app import SvsegLabelApp" in (tmp_path / "app" / "main.py").read_text()


def test_other_host_only_when_asked(tmp_path):
    (tmp_path / "studies").mkdir()
    cmd = start_command(str(tmp_path / "studies"), host="0.0.0.0", port=9000, app_dir=str(tmp_path / "app"),
                        models="msa2net,sa2net", dataset_name="demo")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "9000"
    confs = {cmd[i + 1]: cmd[i + 2] for i, c in enumerate(cmd) if c == "--conf"}
    assert confs == {"models": "msa2net,sa2net", "dataset_name": "demo"}


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="studies folder"):
        start_command(str(tmp_path / "missing"))
    (tmp_path / "s").mkdir()
    with pytest.raises(ValueError, match="port"):
        start_command(str(tmp_path / "s"), port=70000)
    with pytest.raises(FileNotFoundError, match="bundles folder"):
        start_command(str(tmp_path / "s"), bundles_dir=str(tmp_path / "nope"))


def test_app_dir_rewritten_atomically(tmp_path):
    app = build_app_dir(tmp_path / "app")
    (app / "main.py").write_text("broken")
    build_app_dir(app)
    assert "SvsegLabelApp" in (app / "main.py").read_text()
    assert not [p for p in app.iterdir() if p.name.startswith(".main.")]


def test_cli_help_and_dry_run(tmp_path):
    out = subprocess.run([sys.executable, "-m", "svseg.label", "start", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--studies" in out.stdout and "127.0.0.1" in out.stdout
    (tmp_path / "s").mkdir()
    out = subprocess.run([sys.executable, "-m", "svseg.label", "start", "--studies", str(tmp_path / "s"),
                          "--app-dir", str(tmp_path / "a"), "--dry-run"], capture_output=True, text=True)
    assert out.returncode == 0 and "monailabel.main start_server" in out.stdout
