"""Thin adapters from the bundle glue to the other svseg packages.

The bundle code reaches dataset rules (:mod:`svseg.data.datasets`), datalists
(:mod:`svseg.data.datalist`), slice inference (:mod:`svseg.inference`) and volume evaluation
(:mod:`svseg.evaluation`) only through the functions here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "get_dataset_spec",
    "spec_field",
    "class_names",
    "datalist_for",
    "make_slice_inferer",
    "evaluate_case",
    "write_report",
]


def get_dataset_spec(name: str) -> Any:
    """The :class:`svseg.data.datasets.DatasetSpec` of ``name`` (``synapse``, ``lits``, ``acdc``, ``demo``)."""
    from svseg.data.datasets import get_dataset

    return get_dataset(name)


def spec_field(spec: Any, field: str, default: Any = None) -> Any:
    """Field ``field`` of a dataset spec, or ``default`` when the spec does not define it."""
    value = getattr(spec, field, None)
    return default if value is None else value


def class_names(name: str) -> list[str]:
    """Class names of dataset ``name``, index = label id, background first."""
    return [str(n) for n in get_dataset_spec(name).class_names]


def datalist_for(name: str, data_root: str | None, split: str | Sequence[str]) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of the first non-empty split in ``split``."""
    from svseg.data.datalist import datalist_for as _datalist_for

    splits = [split] if isinstance(split, str) else list(split)
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


def make_slice_inferer(roi_size: Sequence[int], axis: int = 2, batch_size: int = 16, mode: str = "resize") -> Any:
    """:class:`svseg.inference.SliceInferer` (2D network over a (B, C, H, W, D) volume, slice-batched)."""
    from svseg.inference import SliceInferer

    return SliceInferer(roi_size=tuple(int(r) for r in roi_size), axis=axis, batch_size=batch_size, mode=mode)


def evaluate_case(pred: Any, ref: Any, class_names: Sequence[str], spacing: Any = None,
                  protocol: str = "standard", case: str | None = None) -> list[dict]:
    """Per-class 3D rows of one case (:func:`svseg.evaluation.evaluate_case`)."""
    from svseg.evaluation import evaluate_case as _evaluate_case

    return _evaluate_case(pred, ref, class_names=list(class_names), spacing=spacing, protocol=protocol, case=case)


def write_report(rows: list[dict], output_dir: str, protocol: str, spacing: Any = None) -> dict:
    """Write ``metrics.csv``, ``summary.json`` and the box plot (:func:`svseg.evaluation.write_report`)."""
    from svseg.evaluation import write_report as _write_report

    return _write_report(rows, output_dir, protocol=protocol, spacing=spacing)
