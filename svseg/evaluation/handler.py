"""The volume-metric handler of the bundles' ``evaluate.json``.

MONAI's metric handlers (``MeanDice``, ``HausdorffDistance``) accumulate one number per metric
over the run; they write no per-case, per-class table, know no named protocol (``transunet``'s
medpy-identical voxel-unit HD95), and draw no pictures. :class:`VolumeMetricsHandler` fills that
gap and nothing more: attached to a MONAI ``SupervisedEvaluator`` over whole volumes (each item one
case, the network run slice by slice by :class:`svseg.inference.VolumeSliceInferer`), it scores
every predicted volume in 3D with :func:`svseg.evaluation.evaluate_case`, draws
``overlays/<case>.png`` with :mod:`svseg.report`, and at the end writes ``metrics.csv``,
``summary.json`` and ``boxplot.png`` with :func:`svseg.evaluation.write_report`.

Items of 2D image data sets (``(C, H, W)`` images read by :class:`svseg.data.Image2DReader`, or any
channel-first item with two spatial axes) are scored as 2D maps: HD95 in pixels unless the image's
affine holds a pixel size, one overlay panel per image, in colour for an RGB image.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from svseg.evaluation.evaluator import evaluate_case, write_report
from svseg.evaluation.labels import to_label_array
from svseg.io import case_name
from svseg.report import write_case_overlay

__all__ = ["VolumeMetricsHandler", "evaluator_items", "item_is_2d", "meta_spacing"]

logger = logging.getLogger(__name__)


def meta_spacing(image: Any, ndim: int = 3) -> tuple[float, ...] | None:
    """Voxel spacing of a MONAI ``MetaTensor`` with ``ndim`` spatial axes (``None`` when unknown).

    3D: the ``pixdim`` meta data. 2D: ``pixdim`` when present, else the column norms of the
    affine; an identity affine (:class:`svseg.data.Image2DReader` without a spacing: one pixel = one
    unit) means no pixel size is known, so ``None`` (pixels).
    """
    meta = getattr(image, "meta", None)
    if not meta:
        return None
    if "pixdim" in meta:
        pix = np.asarray(meta["pixdim"]).reshape(-1)
        return tuple(float(v) for v in pix[1:1 + ndim])
    if ndim != 2 or meta.get("affine") is None:
        return None
    aff = meta["affine"]
    aff = np.asarray(aff.detach().cpu().numpy() if hasattr(aff, "detach") else aff, dtype=np.float64)
    sizes = np.sqrt((aff[:2, :2] ** 2).sum(axis=0))
    return None if np.allclose(sizes, 1.0) else tuple(float(v) for v in sizes)


def item_is_2d(item: Mapping) -> bool:
    """Whether an evaluator item holds a 2D image: its image's meta data says so (``image_2d``, set by
    :class:`svseg.data.Image2DReader`), or the channel-first image ``(C, H, W)`` and the label both
    have two spatial axes. MONAI items are channel first, so a 3D item has 4 axes."""
    image = item.get("image")
    meta = getattr(image, "meta", None) or {}
    if "image_2d" in meta:
        flags = np.asarray(meta["image_2d"]).reshape(-1)  # a bool, or a tensor/list after (de)collation
        return bool(flags[0]) if flags.size else False
    label = item.get("label")
    return image is not None and np.ndim(image) == 3 and (label is None or np.ndim(label) == 3)


def _label_map(x: Any, two_d: bool, name: str) -> np.ndarray:
    """A label map of an item without its channel: 2D items ``(1, H, W)`` -> ``(H, W)`` (``(K, H, W)``
    scores by argmax), 3D items by :func:`to_label_array`."""
    if not two_d:
        return to_label_array(x, name)
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.argmax(arr, axis=0)
    return to_label_array(arr, name)


def evaluator_items(engine: Engine, counted: int = 0) -> Iterator[tuple[str, Mapping]]:
    """The decollated output items of one MONAI evaluator iteration, each with its case id.

    The case id is the batch item's ``case`` key, else the image file's name
    (:func:`svseg.io.case_name` of its ``filename_or_obj`` meta data), else ``case<N>`` counted from
    ``counted``. :class:`VolumeMetricsHandler` and :class:`svseg.inference.PredictionSaver` share it,
    so metrics and written predictions name a case alike.
    """
    outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
    for i, item in enumerate(outputs):
        info = batch[i] if i < len(batch) and isinstance(batch[i], Mapping) else {}
        source = (getattr(item.get("image"), "meta", None) or {}).get("filename_or_obj")
        if info.get("case") is not None:
            case = str(info["case"])
        else:
            case = case_name(str(source)) if source else f"case{counted + i:04d}"
        yield case, item


class VolumeMetricsHandler:
    """Per-case, per-class 3D (or 2D) metrics of a MONAI evaluator run, written as ``metrics.csv`` + ``summary.json``.

    Expects decollated evaluator outputs whose ``pred`` is a label map (postprocessing
    ``AsDiscreted(keys="pred", argmax=True)``) and whose ``label`` is the reference label map; the
    case id is the batch item's ``case`` key. Spacing comes from the image's ``pixdim``
    (:func:`meta_spacing`). 2D items (:func:`item_is_2d`) are scored as 2D maps.

    Config snippet (``evaluate.json``)::

        {"_target_": "svseg.evaluation.VolumeMetricsHandler", "output_dir": "@output_dir",
         "class_names": "@class_names", "protocol": "@protocol"}

    Args:
        output_dir: folder of ``metrics.csv``, ``summary.json``, ``boxplot.png`` and ``overlays/``.
        class_names: names by label id, background first.
        protocol: evaluation protocol name (``standard`` or ``transunet``).
        overlays: draw ``overlays/<case>.png`` per case.
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], protocol: str = "standard",
                 overlays: bool = True) -> None:
        self.output_dir = str(output_dir)
        self.class_names = [str(n) for n in class_names]
        self.protocol = str(protocol)
        self.overlays = bool(overlays)
        self.rows: list[dict] = []
        self.cases = 0
        self.summary: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows, self.cases, self.summary = [], 0, None

    def iteration_completed(self, engine: Engine) -> None:
        for case, item in evaluator_items(engine, self.cases):
            image = item["image"]
            two_d = item_is_2d(item)
            pred, ref = _label_map(item["pred"], two_d, "pred"), _label_map(item["label"], two_d, "label")
            self.cases += 1
            self.rows.extend(evaluate_case(pred, ref, class_names=self.class_names,
                                           spacing=meta_spacing(image, ndim=2 if two_d else 3),
                                           protocol=self.protocol, case=case))
            if self.overlays:
                try:
                    write_case_overlay(image, ref if two_d else item["label"], pred, self.output_dir, case,
                                       class_names=self.class_names, image_2d=two_d)
                except Exception as e:  # noqa: BLE001 - a picture must never cost the metrics; say why it is missing
                    logger.warning("overlay for %s not drawn: %s: %s", case, type(e).__name__, e)
            logger.info("evaluated %s (%d/%d)", case, self.cases, engine.state.epoch_length or 0)

    def completed(self, engine: Engine) -> None:
        # the rows carry each case's spacing; write_report states the spacings really used
        self.summary = write_report(self.rows, self.output_dir, protocol=self.protocol)
        logger.info("wrote %s and %s", os.path.join(self.output_dir, "metrics.csv"),
                    os.path.join(self.output_dir, "summary.json"))
