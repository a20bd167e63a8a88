"""MONAI Label server tests against a real ``monailabel start_server`` process (marker ``label``).

Run with ``make test-label`` (its own environment ``.venv-label``: MONAI Label 0.8.5 pins numpy<2).
The studies are crops of the real MNI152 T1 template that ships inside nilearn (two different crops,
so the two studies differ in shape). The weights are random: the test saves them itself, as the
server needs ``<bundle>/models/model.pt`` and nothing may be downloaded.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.label

monailabel = pytest.importorskip("monailabel", reason="MONAI Label is not installed: run `make test-label`")

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "bundles"
# bundles the infer checks run on (the two lightest that exist); /info/ must list all served bundles
INFER_PREFERENCE = ("sa2net", "msa2net", "afma", "msga", "svanet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None,
             timeout: float = 600):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _multipart(field: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = "svsegboundary7c1f"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _bundles_with_configs() -> list[str]:
    return sorted(p.name for p in BUNDLES.iterdir()
                  if (p / "configs" / "inference.json").is_file() and (p / "configs" / "metadata.json").is_file())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import nibabel as nib
    import torch
    from monai.bundle import ConfigParser
    from nilearn.datasets import load_mni152_template

    tmp = tmp_path_factory.mktemp("label")
    studies = tmp / "studies"
    studies.mkdir()
    t1 = load_mni152_template(resolution=1)  # real MRI, ships inside nilearn
    vol = np.asarray(t1.dataobj, dtype=np.float32)
    shifted = t1.affine.copy()
    crops = {"mni_a": (slice(50, 146), slice(60, 172), slice(84, 96)),
             "mni_b": (slice(40, 120), slice(70, 166), slice(100, 110))}
    for name, sl in crops.items():
        aff = shifted.copy()
        aff[:3, 3] += aff[:3, :3] @ np.array([s.start for s in sl], dtype=float)
        nib.save(nib.Nifti1Image(vol[sl], aff), str(studies / f"{name}.nii.gz"))

    names = _bundles_with_configs()
    assert len(names) >= 2, f"need at least two bundles under {BUNDLES}, found {names}"
    bundles = tmp / "bundles"
    for n in names:
        shutil.copytree(BUNDLES / n, bundles / n, ignore=shutil.ignore_patterns("models", "runs", "eval"))
        p = ConfigParser()
        p.read_config(str(bundles / n / "configs" / "inference.json"))
        p["bundle_root"] = str(bundles / n)
        p["data_root"] = str(studies)  # as the app serves it: the bundle's own dataset classes
        torch.manual_seed(0)
        net = p.get_parsed_content("network_def")
        (bundles / n / "models").mkdir()
        torch.save({"model": net.state_dict()}, bundles / n / "models" / "model.pt")
        del net

    port = _free_port()
    log = open(tmp / "server.log", "w")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "svseg.label", "start", "--studies", str(studies), "--port", str(port),
         "--bundles-dir", str(bundles), "--app-dir", str(tmp / "app")],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-4000:]}")
        try:
            status, _ = _request(base + "/info/", timeout=5)
            if status == 200:
                break
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(2)
    else:
        proc.kill()
        raise AssertionError(f"server did not answer in time:\n{(tmp / 'server.log').read_text()[-4000:]}")
    yield {"base": base, "proc": proc, "studies": studies, "bundles": bundles, "names": names, "log": tmp / "server.log"}
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    log.close()


def test_info_lists_every_bundle_with_its_labels(server):
    from svseg.label.app import bundle_labels

    status, body = _request(server["base"] + "/info/")
    assert status == 200
    info = json.loads(body)
    assert sorted(info["models"]) == server["names"]
    for name in server["names"]:
        model = info["models"][name]
        assert model["labels"] == bundle_labels(server["bundles"] / name), name
        assert model["dimension"] == 3
    assert sorted(info["trainers"]) == server["names"]


def _listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket in LISTEN state on ``port`` (Linux /proc/net/tcp*)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if int(port_hex, 16) != port or state != "0A":  # 0A = LISTEN
                continue
            if width == 8:
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr_hex))))
            else:
                found.add("::1" if addr_hex == "00000000000000000000000001000000" else addr_hex)
    return found


def test_binds_loopback_only(server):
    # the default host is 127.0.0.1: the only listening socket on the port is the loopback one
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux /proc/net/tcp to read the bound address")
    port = int(server["base"].rsplit(":", 1)[1])
    assert _listening_addresses(port) == {"127.0.0.1"}


@pytest.mark.parametrize("rank", [0, 1])
def test_infer_returns_label_volume_of_image_shape(server, rank):
    import nibabel as nib

    names = [n for n in INFER_PREFERENCE if n in server["names"]]
    name = names[rank]
    study = ["mni_a", "mni_b"][rank]
    status, body = _request(f"{server['base']}/infer/{name}?image={study}&output=image", method="POST")
    assert status == 200, body[:500]
    out = server["log"].parent / f"pred_{name}.nii.gz"
    out.write_bytes(body)
    pred = nib.load(str(out))
    img = nib.load(str(server["studies"] / f"{study}.nii.gz"))
    assert pred.shape == img.shape
    np.testing.assert_allclose(pred.affine, img.affine, atol=1e-4)
    labels = np.unique(np.asarray(pred.dataobj))
    from svseg.label.app import bundle_labels

    assert set(labels.astype(int)) <= {0, *bundle_labels(server["bundles"] / name).values()}


def test_bad_requests_get_4xx_and_server_keeps_serving(server):
    base, name = server["base"], server["names"][0]
    status, body = _request(f"{base}/infer/no_such_model?image=mni_a&output=image", method="POST")
    assert status == 404 and b"no_such_model" in body
    status, body = _request(f"{base}/infer/{name}?output=image", method="POST")  # no image at all
    assert 400 <= status < 500, body
    status, body = _request(f"{base}/infer/{name}?image=not_a_study&output=image", method="POST")
    assert 400 <= status < 500, body
    payload, ctype = _multipart("file", "broken.nii.gz", b"\x1f\x8b" + os.urandom(4000))  # corrupt gzip
    status, body = _request(f"{base}/infer/{name}?output=image", method="POST", data=payload,
                            headers={"Content-Type": ctype})
    assert 400 <= status < 500 and b"cannot read image" in body, body
    status, _ = _request(base + "/info/")
    assert status == 200
    assert server["proc"].poll() is None


def test_unknown_models_and_bad_params_are_refused_before_anything_starts(server):
    base, name = server["base"], server["names"][0]
    status, body = _request(f"{base}/train/no_such_model", method="POST", data=b"{}",
                            headers={"Content-Type": "application/json"})
    assert status == 404 and b"no_such_model" in body and name.encode() in body, body
    status, body = _request(f"{base}/train/{name}", method="POST", data=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert status == 400 and b"params is not valid JSON" in body, body
    status, body = _request(f"{base}/train/")
    assert b"RUNNING" not in body and b"SUBMITTED" not in body, body  # the refused requests started nothing
    boundary = "svsegboundary7c1f"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{{broken\r\n"
            f"--{boundary}--\r\n").encode()
    status, body = _request(f"{base}/infer/{name}?image=mni_a&output=image", method="POST", data=form,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and b"params is not valid JSON" in body, body
    status, _ = _request(base + "/info/")
    assert status == 200 and server["proc"].poll() is None


def test_stop_server_by_its_own_pid(server):
    proc = server["proc"]
    # `python -m svseg.label start` execs the server: the PID we started is the server's
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        raise AssertionError("server ignored SIGINT for 60 s")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(server["base"] + "/info/", timeout=5)
