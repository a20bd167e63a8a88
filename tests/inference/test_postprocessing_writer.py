"""Largest-component post-processing, NIfTI writing and file prediction (synthetic data)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from svseg.evaluation import evaluate_folders
from svseg.inference import PredictionSaver, VolumeSliceInferer, keep_largest_component, write_nifti


def _labels(seed=0, shape=(16, 14, 12)):
    rng = np.random.default_rng(seed)
    return rng.choice(4, size=shape, p=[0.7, 0.1, 0.1, 0.1]).astype(np.uint8)


def test_keep_largest_known_case():
    lab = np.zeros((10, 10), np.uint8)
    lab[0:3, 0:3] = 1  # 9 px, kept
    lab[5:7, 5:7] = 1  # 4 px, removed
    lab[9, 9] = 2  # single component of class 2, kept
    lab[4, 4] = 1  # touches the 4 px block only diagonally
    out = keep_largest_component(lab, connectivity=1)
    assert out[0:3, 0:3].all() and out[5:7, 5:7].sum() == 0 and out[4, 4] == 0 and out[9, 9] == 2


@pytest.mark.parametrize("connectivity", [1, 3])
def test_keep_largest_equals_full_volume_reference(connectivity):
    lab = _labels()
    ours = keep_largest_component(lab, connectivity=connectivity)
    expected = lab.copy()
    structure = ndimage.generate_binary_structure(3, connectivity)
    for c in (1, 2, 3):
        comp, n = ndimage.label(lab == c, structure=structure)
        sizes = [(comp == i).sum() for i in range(1, n + 1)]
        keep = 1 + int(np.argmax(sizes))
        expected[(comp > 0) & (comp != keep)] = 0
    np.testing.assert_array_equal(ours, expected)
    # only the listed classes are processed; tensors come back as tensors
    only1 = keep_largest_component(torch.as_tensor(lab), classes=[1], connectivity=connectivity)
    assert isinstance(only1, torch.Tensor)
    np.testing.assert_array_equal(only1.numpy() == 2, lab == 2)


def test_write_nifti_keeps_affine_spacing_and_header(tmp_path):
    aff = np.array([[-0.7, 0, 0, 10.0], [0, 0.7, 0, -5.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.random.rand(16, 14, 12).astype(np.float32), aff)
    img.header.set_xyzt_units("mm", "sec")
    src = tmp_path / "image.nii.gz"
    nib.save(img, str(src))
    lab = _labels()
    out = write_nifti(lab, src, tmp_path / "pred" / "image.nii.gz")
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, aff)
    np.testing.assert_allclose(back.header.get_zooms(), (0.7, 0.7, 2.5))
    assert back.get_data_dtype() == np.uint8 and back.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(np.asarray(back.dataobj), lab)
    with pytest.raises(ValueError, match="shape"):
        write_nifti(lab[:-1], src, tmp_path / "bad.nii.gz")
    with pytest.raises(FileNotFoundError):
        write_nifti(lab, tmp_path / "missing.nii.gz", tmp_path / "x.nii.gz")


def test_write_nifti_undoes_monai_orientation(tmp_path):
    from monai.transforms import LoadImage, Orientation

    aff = np.array([[-1.0, 0, 0, 0], [0, -1.5, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])  # LPS-like
    lab = _labels(1)
    src = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(lab, aff), str(src))
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(str(src))
    ras = Orientation("RAS")(loaded)  # flips axes 0 and 1
    assert not np.array_equal(ras[0].numpy(), lab)
    out = write_nifti(ras[0].numpy(), ras, tmp_path / "back.nii.gz")
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, aff)
    np.testing.assert_array_equal(np.asarray(back.dataobj), lab)


def test_prediction_saver_in_a_supervised_evaluator(tmp_path):
    """The bundles' prediction path on synthetic volumes: LoadVolumed -> SupervisedEvaluator with
    VolumeSliceInferer -> argmax -> PredictionSaver -> NIfTI with the input affine -> evaluate."""
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator
    from monai.transforms import AsDiscreted, Compose, EnsureTyped

    from svseg.data import LoadVolumed

    img_dir, ref_dir, pred_dir = tmp_path / "img", tmp_path / "ref", tmp_path / "pred"
    img_dir.mkdir()
    ref_dir.mkdir()
    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    aff[:3, 3] = [10.0, -4.0, 2.5]
    for i in range(2):
        vol = np.zeros((24, 20, 5), np.float32)
        vol[5:15, 6 + i:14, :] = 1.0
        nib.save(nib.Nifti1Image(vol, aff), str(img_dir / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image((vol > 0.5).astype(np.uint8), aff), str(ref_dir / f"c{i}_seg.nii.gz"))

    class Threshold(torch.nn.Module):
        def forward(self, x):
            return torch.cat([0.5 - x, x - 0.5], dim=1)

    items = [{"image": str(p)} for p in sorted(img_dir.iterdir())]
    loader = DataLoader(Dataset(items, Compose([LoadVolumed(["image"]), EnsureTyped("image", dtype=torch.float32)])),
                        batch_size=1)
    saver = PredictionSaver(pred_dir, postfix="_seg")
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=Threshold(),
                                    inferer=VolumeSliceInferer(roi_size=(24, 20), batch_size=3),
                                    postprocessing=AsDiscreted(keys="pred", argmax=True), val_handlers=[saver])
    evaluator.run()
    assert [p.name for p in saver.written] == ["c0_seg.nii.gz", "c1_seg.nii.gz"]
    for p in saver.written:
        img = nib.load(str(p))
        np.testing.assert_allclose(img.affine, aff)
        assert img.get_data_dtype() == np.uint8
    summary = evaluate_folders(pred_dir, ref_dir, tmp_path / "eval", protocol="standard", class_names=["bg", "fg"],
                               plot=False, progress=False)
    assert summary["overall"]["dice"] == pytest.approx(1.0) and summary["overall"]["hd95"] == pytest.approx(0.0)


def test_prediction_saver_disabled_attaches_nothing(tmp_path):
    from ignite.engine import Engine, Events

    engine = Engine(lambda e, b: b)
    PredictionSaver(tmp_path / "never", enabled=False).attach(engine)
    assert not engine.has_event_handler(PredictionSaver, Events.ITERATION_COMPLETED)
    engine.run([1], max_epochs=1)
    assert not (tmp_path / "never").exists()
