"""Adapters from the bundle glue to the other svseg packages.

The bundle code reaches dataset rules, datalists, slice inference and volume evaluation only
through the functions here. Each adapter uses the owning package (``svseg.data``,
``svseg.inference``, ``svseg.evaluation``) when it is importable and otherwise a small private
implementation with the same contract (``docs/architecture.md``), so the bundles run while the
sibling packages are being written. ``USING_FALLBACK`` records which private versions are active.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "USING_FALLBACK",
    "get_dataset_spec",
    "spec_field",
    "class_names",
    "datalist_for",
    "make_slice_inferer",
    "evaluate_case",
    "write_report",
]

USING_FALLBACK: set[str] = set()

_SPEC_FIELD_ALIASES = {
    "class_names": ("class_names", "classes", "labels"),
    "roi_size": ("roi_size", "default_roi", "roi", "default_roi_size", "image_size"),
    "protocol": ("protocol", "evaluation_protocol", "eval_protocol"),
    "modality": ("modality",),
}

# Private fallback table (the real rules live in svseg.data.datasets).
_FALLBACK_SPECS = {
    "synapse": {"class_names": ["background", "aorta", "gallbladder", "left_kidney", "right_kidney", "liver",
                                "pancreas", "spleen", "stomach"], "modality": "CT", "roi_size": (224, 224),
                "protocol": "transunet"},
    "acdc": {"class_names": ["background", "RV", "Myo", "LV"], "modality": "MR", "roi_size": (224, 224),
             "protocol": "transunet"},
    "lits": {"class_names": ["background", "liver", "tumor"], "modality": "CT", "roi_size": (512, 512),
             "protocol": "standard"},
    "demo": {"class_names": ["background", "grey_matter", "white_matter"], "modality": "MR",
             "roi_size": (224, 224), "protocol": "standard"},
}


def get_dataset_spec(name: str) -> Any:
    """The dataset spec of ``name`` (``synapse``, ``lits``, ``acdc``, ``demo``) from :mod:`svseg.data.datasets`."""
    try:
        from svseg.data.datasets import get_dataset
    except ImportError:
        USING_FALLBACK.add("datasets")
        key = str(name).lower()
        if key not in _FALLBACK_SPECS:
            raise ValueError(f"dataset_name must be one of {sorted(_FALLBACK_SPECS)}, got {name!r}.") from None
        return dict(_FALLBACK_SPECS[key], name=key)
    return get_dataset(name)


def spec_field(spec: Any, field: str, default: Any = None) -> Any:
    """Read ``field`` (or one of its known aliases) from a dataset spec object or mapping."""
    for name in _SPEC_FIELD_ALIASES.get(field, (field,)):
        value = spec.get(name) if isinstance(spec, dict) else getattr(spec, name, None)
        if value is not None:
            return value
    return default


def class_names(name: str) -> list[str]:
    """Class names of dataset ``name``, index = label id, background first."""
    names = spec_field(get_dataset_spec(name), "class_names")
    if names is None:
        raise ValueError(f"the dataset spec of {name!r} defines no class names.")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    return [str(n) for n in names]


def _fallback_demo_root() -> Path:
    base = os.environ.get("SVSEG_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "svseg"))
    return Path(base) / "bundle-fallback-demo"


def _fallback_prepare_demo(root: Path) -> Path:
    """MNI152 2009a T1 split in axial slabs; labels 0 background, 1 grey matter, 2 white matter."""
    if (root / "dataset.json").is_file():
        return root
    import nibabel as nib
    from nilearn import datasets as nd

    t1 = nd.load_mni152_template(resolution=1)
    gm = nd.load_mni152_gm_template(resolution=1).get_fdata()
    wm = nd.load_mni152_wm_template(resolution=1).get_fdata()
    img = t1.get_fdata().astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[(gm >= 0.5) & (gm >= wm)] = 1
    lab[(wm >= 0.5) & (wm > gm)] = 2
    root.mkdir(parents=True, exist_ok=True)
    # axial slabs along the last axis: training, validation, test
    bounds = {"training": [(40, 80), (100, 150)], "validation": [(80, 90)], "test": [(90, 100), (150, 160)]}
    out: dict[str, list] = {}
    for split, slabs in bounds.items():
        out[split] = []
        for a, b in slabs:
            case = f"mni_z{a:03d}_{b:03d}"
            for kind, arr in (("image", img), ("label", lab)):
                p = root / f"{case}_{kind}.nii.gz"
                tmp = root / f".{case}_{kind}.tmp.nii.gz"
                nib.save(nib.Nifti1Image(arr[:, :, a:b], t1.affine), str(tmp))
                os.replace(tmp, p)
            out[split].append({"image": str(root / f"{case}_image.nii.gz"),
                               "label": str(root / f"{case}_label.nii.gz"), "case": case})
    tmp = root / ".dataset.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, root / "dataset.json")
    return root


def datalist_for(name: str, data_root: str | None, split: str | Sequence[str]) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of the first non-empty split in ``split``."""
    splits = [split] if isinstance(split, str) else list(split)
    try:
        from svseg.data.datalist import datalist_for as _datalist_for
    except ImportError:
        USING_FALLBACK.add("datalist")
        if str(name).lower() != "demo" or data_root is not None:
            raise NotImplementedError("svseg.data.datalist is not available yet: only the demo data can be listed.")
        table = json.loads((_fallback_prepare_demo(_fallback_demo_root()) / "dataset.json").read_text())
        for s in splits:
            if table.get(s):
                return [dict(i) for i in table[s]]
        raise ValueError(f"the demo data has no items in splits {splits}.")
    errors = []
    for s in splits:
        try:
            items = _datalist_for(name, data_root=data_root, split=s)
        except (KeyError, ValueError) as e:  # split absent for this dataset
            errors.append(f"{s}: {e}")
            continue
        if items:
            out = []
            for i, item in enumerate(items):
                item = dict(item)
                item.setdefault("case", Path(str(item["image"])).name.split(".")[0] or f"case{i:04d}")
                out.append(item)
            return out
    raise ValueError(f"dataset {name!r} (data_root={data_root!r}) has no items in splits {splits}: {errors}")


class _FallbackSliceInferer:
    """2D network over a 3D volume: every slice along ``axis`` resized to ``roi_size``, batched."""

    def __init__(self, roi_size: Sequence[int], axis: int = 2, batch_size: int = 16, **_: Any) -> None:
        self.roi_size = tuple(int(r) for r in roi_size)
        self.axis = axis
        self.batch_size = batch_size

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        inputs = inputs.as_tensor() if hasattr(inputs, "as_tensor") else torch.as_tensor(inputs)
        if inputs.ndim == 4:  # already 2D
            size = inputs.shape[2:]
            x = F.interpolate(inputs, size=self.roi_size, mode="bilinear", align_corners=False)
            return F.interpolate(network(x), size=size, mode="bilinear", align_corners=False)
        b, c = inputs.shape[:2]
        spatial = inputs.shape[2:]
        axis = self.axis + 2
        vol = torch.movedim(torch.as_tensor(inputs), axis, 1)  # (B, D, C, H, W)
        size = vol.shape[3:]
        slices = vol.reshape(-1, c, *size)
        outs = []
        for i in range(0, slices.shape[0], self.batch_size):
            x = F.interpolate(slices[i : i + self.batch_size], size=self.roi_size, mode="bilinear", align_corners=False)
            y = network(x)
            outs.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        out = torch.cat(outs).reshape(b, vol.shape[1], -1, *size)
        return torch.movedim(out, 1, axis)


def make_slice_inferer(roi_size: Sequence[int], axis: int = 2, batch_size: int = 16, mode: str = "resize") -> Any:
    """:class:`svseg.inference.SliceInferer` (2D network over a (B, C, H, W, D) volume, slice-batched)."""
    try:
        from svseg.inference import SliceInferer
    except ImportError:
        USING_FALLBACK.add("inference")
        return _FallbackSliceInferer(roi_size, axis=axis, batch_size=batch_size)
    return SliceInferer(roi_size=tuple(roi_size), axis=axis, batch_size=batch_size, mode=mode)


def evaluate_case(pred: np.ndarray, ref: np.ndarray, class_names: Sequence[str], spacing: Any = None,
                  protocol: str = "standard", case: str | None = None) -> list[dict]:
    """Per-class 3D Dice / HD95 rows of one case (``svseg.evaluation.evaluate_case``)."""
    try:
        from svseg.evaluation import evaluate_case as _evaluate_case
    except ImportError:
        USING_FALLBACK.add("evaluation")
        rows = []
        for k, name in enumerate(class_names):
            if k == 0:
                continue
            p, r = pred == k, ref == k
            denom = p.sum() + r.sum()
            dice = float(2.0 * (p & r).sum() / denom) if denom else float("nan")
            hd95 = float("nan")
            if p.any() and r.any():
                from monai.metrics import compute_hausdorff_distance

                hd95 = float(compute_hausdorff_distance(torch.as_tensor(p)[None, None], torch.as_tensor(r)[None, None],
                                                        percentile=95, spacing=spacing)[0, 0])
            rows.append({"case": case, "class": name, "dice": dice, "hd95": hd95})
        return rows
    rows = _evaluate_case(pred, ref, class_names=list(class_names), spacing=spacing, protocol=protocol)
    out = []
    for row in rows:
        row = dict(row)
        if case is not None:
            row["case"] = case
        out.append(row)
    return out


def write_report(rows: list[dict], output_dir: str, protocol: str, spacing: Any = None) -> dict:
    """Write ``metrics.csv`` and ``summary.json`` under ``output_dir`` (``svseg.evaluation.write_report``)."""
    try:
        from svseg.evaluation import write_report as _write_report
    except ImportError:
        USING_FALLBACK.add("evaluation")
        import pandas as pd

        os.makedirs(output_dir, exist_ok=True)
        df = pd.DataFrame(rows)
        tmp = os.path.join(output_dir, ".metrics.csv.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, os.path.join(output_dir, "metrics.csv"))
        per_class = {c: {"dice": float(g["dice"].mean()), "hd95": float(g["hd95"].mean())}
                     for c, g in df.groupby("class", sort=False)}
        summary = {"protocol": protocol, "per_class": per_class,
                   "mean": {"dice": float(np.nanmean([v["dice"] for v in per_class.values()])),
                            "hd95": float(np.nanmean([v["hd95"] for v in per_class.values()]))},
                   "n_cases": int(df["case"].nunique())}
        tmp = os.path.join(output_dir, ".summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, os.path.join(output_dir, "summary.json"))
        return summary
    result = _write_report(rows, output_dir, protocol=protocol, spacing=spacing)
    summary_path = os.path.join(output_dir, "summary.json")
    if isinstance(result, dict):
        return result
    with open(summary_path) as f:
        return json.load(f)
