"""The volume-metric handler of the bundles' ``evaluate.json``.

MONAI's metric handlers (``MeanDice``, ``HausdorffDistance``) accumulate one number per metric
over the run; they write no per-case, per-class table, know no named protocol (``transunet``'s
medpy-identical voxel-unit HD95), and draw no pictures. :class:`VolumeMetricsHandler` fills that
gap and nothing more: attached to a MONAI ``SupervisedEvaluator`` over whole volumes (each item one
case, the network run slice by slice by :class:`svseg.inference.VolumeSliceInferer`), it scores
every predicted volume in 3D with :func:`svseg.evaluation.evaluate_case`, draws
``overlays/<case>.png`` with :mod:`svseg.report`, and at the end writes ``metrics.csv``,
``summary.json`` and ``boxplot.png`` with :func:`svseg.evaluation.write_report`.
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

__all__ = ["VolumeMetricsHandler", "evaluator_items", "meta_spacing"]

logger = logging.getLogger(__name__)


def meta_spacing(image: Any) -> tuple[float, ...] | None:
    """Voxel spacing of a MONAI ``MetaTensor`` from its ``pixdim`` meta data (``None`` without it)."""
    meta = getattr(image, "meta", None)
    if not meta or "pixdim" not in meta:
        return None
    pix = np.asarray(meta["pixdim"]).reshape(-1)
    return tuple(float(v) for v in pix[1:4])


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
    """Per-case, per-class 3D metrics of a MONAI evaluator run, written as ``metrics.csv`` + ``summary.json``.

    Expects decollated evaluator outputs whose ``pred`` is a label map (postprocessing
    ``AsDiscreted(keys="pred", argmax=True)``) and whose ``label`` is the reference label map; the
    case id is the batch item's ``case`` key. Spacing comes from the image's ``pixdim``.

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
            pred, ref = to_label_array(item["pred"], "pred"), to_label_array(item["label"], "label")
            self.cases += 1
            self.rows.extend(evaluate_case(pred, ref, class_names=self.class_names, spacing=meta_spacing(image),
                                           protocol=self.protocol, case=case))
            if self.overlays:
                try:
                    write_case_overlay(image, item["label"], pred, self.output_dir, case, class_names=self.class_names)
                except Exception as e:  # noqa: BLE001 - a picture must never cost the metrics; say why it is missing
                    logger.warning("overlay for %s not drawn: %s: %s", case, type(e).__name__, e)
            logger.info("evaluated %s (%d/%d)", case, self.cases, engine.state.epoch_length or 0)

    def completed(self, engine: Engine) -> None:
        # the rows carry each case's spacing; write_report states the spacings really used
        self.summary = write_report(self.rows, self.output_dir, protocol=self.protocol)
        logger.info("wrote %s and %s", os.path.join(self.output_dir, "metrics.csv"),
                    os.path.join(self.output_dir, "summary.json"))
