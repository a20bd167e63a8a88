"""The MONAI Label app serves a model zip written by ``svseg export`` (marker ``label``; run with ``make test-label``).

The zip is unpacked into a bundles folder of its own and served with ``--bundles-dir``: the app lists it under
the zip's folder name with the classes of its ``metadata.json`` (the demo's grey and white matter, not the
sa2net bundle's ACDC classes) and answers an infer request with a label volume of the study's shape and
geometry. Real images: the tiny demo set (MNI152 from nilearn) as studies. The weights are the untrained ones of
``tests/bundles/test_export.py``'s run folder (no training, nothing downloaded).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

pytestmark = pytest.mark.label

monailabel = pytest.importorskip("monailabel", reason="MONAI Label is not installed: run `make test-label`")

from tests.bundles.test_export import FEATURES, make_run  # noqa: E402 - after the skip: it imports torch and svseg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, method: str = "GET", timeout: float = 600) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from svseg.bundle import export_run
    from svseg.data import prepare_demo

    tmp = tmp_path_factory.mktemp("label_export")
    demo = prepare_demo(tmp / "demo", tiny=True)
    studies = tmp / "studies"
    studies.mkdir()
    for f in sorted((demo / "imagesTs").glob("*.nii.gz")):
        shutil.copy2(f, studies / f.name)
    run = make_run(tmp / "run")
    export_run(run, tmp / "sa2net_demo.zip", overrides=FEATURES)
    bundles = tmp / "bundles"
    with zipfile.ZipFile(tmp / "sa2net_demo.zip") as z:
        z.extractall(bundles)
    port = free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "svseg.label", "start", "--studies", str(studies), "--port", str(port),
         "--bundles-dir", str(bundles), "--app-dir", str(tmp / "app")],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-4000:]}")
        try:
            if request(base + "/info/", timeout=5)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(2)
    else:
        proc.kill()
        raise AssertionError(f"server did not answer in time:\n{(tmp / 'server.log').read_text()[-4000:]}")
    yield {"base": base, "studies": studies, "log": tmp / "server.log"}
    proc.kill()
    proc.wait(30)
    log.close()


def test_exported_zip_is_served_with_its_own_classes(served):
    import nibabel as nib

    status, body = request(served["base"] + "/info/")
    assert status == 200, body[:500]
    model = json.loads(body)["models"]["sa2net_demo"]
    assert model["labels"] == {"grey matter": 1, "white matter": 2}
    status, body = request(f"{served['base']}/infer/sa2net_demo?image=demo_ts0&output=image", method="POST")
    assert status == 200, body[:500]
    out = served["log"].parent / "pred.nii.gz"
    out.write_bytes(body)
    pred, image = nib.load(str(out)), nib.load(str(served["studies"] / "demo_ts0.nii.gz"))
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    labels = set(np.unique(np.asarray(pred.dataobj)).astype(int))
    assert labels <= {0, 1, 2} and len(labels) > 1, labels
