"""The papers' named evaluation protocols: each reproduces the metric code of one authors' repository.

Five protocols, next to ``standard`` and ``transunet`` (:mod:`svseg.evaluation.metrics`):

``svanet``
    SvANet (anthonyweidai/SvANet), ``tools/tinyObjectsValidation.py`` ``computeMetrics`` and
    ``traversalTinyRatio``, on ``lib/metrics/maskRegion.py`` ``computeMaskRegion``,
    ``lib/metrics/utils.py`` ``manageMetricMM``, ``lib/metrics/eMeasure.py`` ``measureEAM`` and
    ``lib/metrics/absoluteError.py`` ``computeAE`` (the same sums as ``lib/trainer/statistics.py``).
``uctransnet``
    UCTransNet (McGregorWwww/UCTransNet), ``test_model.py`` ``show_image_with_dice``: per-image Dice
    ``2|L∩P| / (|L| + |P| + 1e-5)`` and ``sklearn.metrics.jaccard_score``, averaged over the images.
``awesome_unet``
    Awesome-U-Net (NITR098/Awesome-U-Net), ``train_and_test/*/*.py`` ``test``: a torchmetrics 0.10
    ``MetricCollection`` (``F1Score, Accuracy, Dice, Precision, Recall, Specificity, JaccardIndex(2)``).
``msga``
    Multi-scale guided attention (sinAshish/Multi-Scale-Attention), ``src/common/utils.py``
    ``evaluate3D``: medpy ``dc`` per class 1..K-1 per re-stacked subject; ``src/main.py`` reports
    the mean (and std) over subjects per class and the mean of the class means.
``afma``
    AFMA (ShengtianSang/AFMA), ``utils/train.py`` ``Epoch.run`` on ``utils/meter.py``
    ``confusion_matrix_fn``: per class TP/FP/FN/TN summed over the split; ``mean_iou_score``,
    ``global_iou_score`` and ``accuracy``.

Predictions here are label maps (argmax of the network scores). For the binary sets (MoNuSeg,
GlaS, ISIC) a label map {0, 1} is what the papers' thresholding gives: UCTransNet's ``output > 0.5``
on a sigmoid is the argmax of the two-class softmax (a tie at exactly 0.5 goes to background in
both), Awesome-U-Net already takes ``argmax`` over two channels, SvANet's ``computeMaskRegion`` and
AFMA's ``confusion_matrix_fn`` take ``argmax`` themselves.

Every protocol writes per-case, per-class rows (``metrics.csv``: ``case, class, dice, hd95`` (NaN:
no distance metric), ``iou``, ``label``, ``tp, fp, fn, tn``, ``ndim`` and its own columns) and a
summary with the dataset-level numbers the paper reports, computed from the rows alone. Values are
fractions in [0, 1] (the papers print them ×100). ``svanet`` rows include the background class,
which its averages count.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from svseg.data.specs import SVANET_BINS
from svseg.evaluation.labels import ClassNames, label_pair
from svseg.evaluation.metrics import PROTOCOLS

__all__ = [
    "PAPER_PROTOCOLS",
    "EVALUATION_PROTOCOLS",
    "PROTOCOL_SOURCES",
    "SVANET_EPS",
    "UCTRANSNET_SMOOTH",
    "check_protocol",
    "is_paper_protocol",
    "class_counts",
    "largest_object_pct",
    "protocol_case_rows",
    "protocol_summary",
    "svanet_scores",
    "svanet_e_measure",
    "svanet_tiny_table",
]

#: the papers' protocols, in the order of the issue
PAPER_PROTOCOLS = ("svanet", "uctransnet", "awesome_unet", "msga", "afma")
#: every protocol name :func:`svseg.evaluation.evaluate_case` accepts
EVALUATION_PROTOCOLS = tuple(PROTOCOLS) + PAPER_PROTOCOLS
#: the authors' file and function each protocol reproduces (also written to ``summary.json``)
PROTOCOL_SOURCES = {
    "svanet": "anthonyweidai/SvANet tools/tinyObjectsValidation.py computeMetrics, traversalTinyRatio; "
              "lib/metrics/maskRegion.py computeMaskRegion; lib/metrics/utils.py manageMetricMM; "
              "lib/metrics/eMeasure.py measureEAM; lib/metrics/absoluteError.py computeAE",
    "uctransnet": "McGregorWwww/UCTransNet test_model.py show_image_with_dice (per-image Dice, "
                  "sklearn jaccard_score; sums divided by the number of test images)",
    "awesome_unet": "NITR098/Awesome-U-Net train_and_test/isic/*-isic.py test (torchmetrics 0.10 "
                    "MetricCollection: F1Score, Accuracy, Dice, Precision, Recall, Specificity, JaccardIndex(2))",
    "msga": "sinAshish/Multi-Scale-Attention src/common/utils.py evaluate3D (medpy dc per class per subject); "
            "src/main.py mean/std over subjects",
    "afma": "ShengtianSang/AFMA utils/train.py Epoch.run; utils/meter.py confusion_matrix_fn",
}
#: SvANet's ``Eps`` (computeMaskRegion, computeMetrics, measureEAM)
SVANET_EPS = 1e-7
#: UCTransNet's smoothing term in the Dice denominator (``show_image_with_dice``)
UCTRANSNET_SMOOTH = 1e-5

_NAN = float("nan")


def check_protocol(protocol: str) -> None:
    """Raise ``ValueError`` unless ``protocol`` is one of :data:`EVALUATION_PROTOCOLS`."""
    if protocol not in EVALUATION_PROTOCOLS:
        raise ValueError(f"protocol must be one of {EVALUATION_PROTOCOLS}, got {protocol!r}.")


def is_paper_protocol(protocol: str) -> bool:
    """Whether ``protocol`` is one of the papers' protocols (handled here, not by the standard code)."""
    return protocol in PAPER_PROTOCOLS


def class_counts(pred: np.ndarray, ref: np.ndarray, n_classes: int, ignore_index: int | None = None) -> dict[str, np.ndarray]:
    """Per label id 0..``n_classes``-1: ``tp, fp, fn, tn`` pixel (voxel) counts, one class against the rest.

    Pixels whose reference is ``ignore_index`` are dropped first (SvANet's ``target == 255``).
    """
    p, r = np.asarray(pred).ravel(), np.asarray(ref).ravel()
    if ignore_index is not None:
        keep = r != ignore_index
        p, r = p[keep], r[keep]
    p, r = p.astype(np.int64), r.astype(np.int64)
    size = max(n_classes, int(p.max(initial=0)) + 1, int(r.max(initial=0)) + 1)
    tp = np.bincount(r[p == r], minlength=size)[:n_classes]
    n_pred = np.bincount(p, minlength=size)[:n_classes]
    n_ref = np.bincount(r, minlength=size)[:n_classes]
    fp, fn = n_pred - tp, n_ref - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": p.size - tp - fp - fn}


def largest_object_pct(ref: np.ndarray, n_classes: int | None = None) -> float:
    """SvANet's image size ratio: the largest object of any foreground class, in % of the image.

    ``lib/utils/image/utils.py`` ``measureMaskArea`` takes per grey value the largest external
    contour (``cv2.findContours`` after a 2x2 closing) and ``getKeepTinyIds`` the maximum over the
    classes, 0 for an empty mask. svseg counts the pixels of the largest connected component (full
    connectivity); OpenCV's polygon area is smaller by about half the object's perimeter (a single
    pixel has contour area 0), so an image near a threshold can fall into the next subset.
    """
    r = np.asarray(ref)
    top = int(r.max(initial=0)) if n_classes is None else n_classes - 1
    structure = ndimage.generate_binary_structure(r.ndim, r.ndim)
    best = 0
    for label in range(1, top + 1):
        mask = r == label
        if not mask.any():
            continue
        comp, n = ndimage.label(mask, structure=structure)
        best = max(best, int(np.bincount(comp.ravel(), minlength=n + 1)[1:].max()))
    return 100.0 * best / r.size


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num) / float(den) if den else float(empty)


def protocol_case_rows(pred: Any, ref: Any, class_names: ClassNames, protocol: str, case: str | None = None) -> list[dict]:
    """Rows of one case (image or volume) in a paper protocol, one per class (``svanet``: background too).

    Every row: ``case, class, dice, hd95 (NaN), iou, label, pred_voxels, ref_voxels, tp, fp, fn, tn,
    ndim``. Per protocol, for the class against the rest in this case:

    * ``svanet``: ``dice = 2tp / (2tp + fp + fn)``, ``iou = tp / (tp + fp + fn)`` (NaN when the class
      is in neither map); and, repeated on each row of the case, what the dataset-level numbers need:
      ``size_pct`` (:func:`largest_object_pct`), ``fg_tp, fg_fp, fg_fn, fg_tn`` (foreground = any
      class, for the E-measure), ``abs_error`` (sum of ``|pred label - (ref > 0)|``, the MAE) and
      ``voxels``.
    * ``uctransnet``: ``dice = 2tp / (2tp + fp + fn + 1e-5)`` (0 for two empty masks),
      ``iou = tp / (tp + fp + fn)`` (0 for two empty masks: ``jaccard_score``'s zero division).
    * ``awesome_unet``: torchmetrics' micro statistics on this image, 0 where a denominator is 0:
      ``dice`` (= ``f1``), ``iou`` (foreground), ``jaccard_index`` (mean of the background and
      foreground IoU, ``JaccardIndex(2)``, an absent class scoring 0), ``accuracy``, ``precision``,
      ``recall``, ``specificity``.
    * ``msga``: ``dice`` = medpy ``dc`` (0 for two empty masks), ``iou = tp / (tp + fp + fn)`` (0 there).
    * ``afma``: ``iou = tp / (tp + fp + fn)`` and ``dice`` (NaN when the class is in neither map),
      ``accuracy = (tp + tn) / n``.
    """
    check_protocol(protocol)
    if not is_paper_protocol(protocol):
        raise ValueError(f"{protocol!r} is not a paper protocol; use svseg.evaluation.evaluate_case.")
    p, r, names = label_pair(pred, ref, class_names)
    counts = class_counts(p, r, len(names))
    case_id = "case" if case is None else str(case)
    shared: dict[str, Any] = {}
    if protocol == "svanet":
        fg_p, fg_r = p != 0, r != 0
        fg_tp = int(np.count_nonzero(fg_p & fg_r))
        fg_fp, fg_fn = int(np.count_nonzero(fg_p)) - fg_tp, int(np.count_nonzero(fg_r)) - fg_tp
        shared = {"size_pct": largest_object_pct(r, len(names)), "fg_tp": fg_tp, "fg_fp": fg_fp, "fg_fn": fg_fn,
                  "fg_tn": int(p.size) - fg_tp - fg_fp - fg_fn,
                  "abs_error": int(np.abs(p.astype(np.int64) - fg_r.astype(np.int64)).sum()), "voxels": int(p.size)}
    rows = []
    for label in range(0 if protocol == "svanet" else 1, len(names)):
        tp, fp, fn, tn = (int(counts[k][label]) for k in ("tp", "fp", "fn", "tn"))
        row: dict[str, Any] = {"case": case_id, "class": names[label], "hd95": _NAN}
        row.update(_case_metrics(protocol, tp, fp, fn, tn))
        row.update(label=label, pred_voxels=tp + fp, ref_voxels=tp + fn, tp=tp, fp=fp, fn=fn, tn=tn, ndim=p.ndim)
        row.update(shared)
        rows.append(row)
    return rows


def _case_metrics(protocol: str, tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    union = tp + fp + fn
    if protocol in ("svanet", "afma"):
        out = {"dice": _ratio(2 * tp, union + tp, _NAN), "iou": _ratio(tp, union, _NAN)}
        if protocol == "afma":
            out["accuracy"] = _ratio(tp + tn, union + tn, _NAN)
        return out
    if protocol == "uctransnet":
        return {"dice": 2.0 * tp / (2 * tp + fp + fn + UCTRANSNET_SMOOTH), "iou": _ratio(tp, union, 0.0)}
    if protocol == "msga":
        return {"dice": _ratio(2 * tp, union + tp, 0.0), "iou": _ratio(tp, union, 0.0)}
    return _awesome_scores(tp, fp, fn, tn)


def _awesome_scores(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """torchmetrics 0.10 micro scores (``zero_division=0``) and ``JaccardIndex(2)`` (``absent_score=0``)."""
    fg_iou = _ratio(tp, tp + fp + fn, 0.0)
    bg_iou = _ratio(tn, tn + fp + fn, 0.0)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        "iou": fg_iou,
        "jaccard_index": (fg_iou + bg_iou) / 2.0,
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, 0.0),
        "precision": _ratio(tp, tp + fp, 0.0),
        "recall": _ratio(tp, tp + fn, 0.0),
        "specificity": _ratio(tn, tn + fp, 0.0),
    }


def svanet_scores(inter: np.ndarray, area_pred: np.ndarray, area_ref: np.ndarray, present: np.ndarray) -> dict[str, Any]:
    """SvANet's per-class and "micro" scores from per-class areas summed over a set of images.

    ``computeMaskRegion``: ``union = ref + pred - inter + 1e-7``; ``computeMetrics``: ``IoU = I/U``,
    ``Dice = 2I / (U + I)``, ``precision = I / (pred + 1e-7)``, ``recall = I / (U - pred + I + 1e-7)``,
    ``F2 = 5PR / (4P + R + 1e-7)``. ``manageMetricMM`` (``metric_type="micro"``) weighs each class
    by ``present``, the number of images whose reference holds it (``UnionCout``), background
    included: a class never in a reference weighs 0 even when predicted. Arrays per class, background first.
    """
    i, ap, ar, n = (np.asarray(x, dtype=np.float64) for x in (inter, area_pred, area_ref, present))
    union = ar + ap - i + SVANET_EPS
    per_class = {
        "iou": i / union,
        "dice": 2 * i / (union + i),
        "precision": i / (ap + SVANET_EPS),
        "recall": i / (union - ap + i + SVANET_EPS),
    }
    p, rc = per_class["precision"], per_class["recall"]
    per_class["f2"] = 5 * p * rc / (4 * p + rc + SVANET_EPS)
    weight = float(n.sum())
    micro = {k: (float((v * n).sum() / weight) if weight else _NAN) for k, v in per_class.items()}
    return {"classes": per_class, "micro": micro}


def svanet_e_measure(fg_counts: Sequence[Sequence[int]], voxels: Sequence[int]) -> float:
    """SvANet's mean E-measure (``measureEAM`` / number of images) over a set of images.

    ``fg_counts`` per image: ``(tp, fp, fn, tn)`` of foreground (any class) against background. The
    authors binarise the whole set at once, so the means ``mu_g``, ``mu_p`` are over all its pixels;
    each pixel scores ``(A + 1)^2 / 4`` with ``A = 2 ag ap / (ag^2 + ap^2 + 1e-7)``, ``ag = g - mu_g``,
    ``ap = p - mu_p``, or ``1 - p`` when no reference of the set has foreground. The sum is divided by
    ``H*W - 1 + 1e-7`` (per image, equal sizes in the authors' batch) and by the number of images.
    """
    c = np.asarray(fg_counts, dtype=np.float64).reshape(-1, 4)
    if c.shape[0] == 0:
        return _NAN
    total = c.sum()
    mu_p = (c[:, 0] + c[:, 1]).sum() / total
    mu_g = (c[:, 0] + c[:, 2]).sum() / total
    if (c[:, 0] + c[:, 2]).sum() == 0:
        per_pixel = np.array([0.0, 0.0, 1.0, 1.0])  # (p, g) = (1,1), (1,0), (0,1), (0,0): E = 1 - p
    else:
        per_pixel = []
        for pv, gv in ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)):
            ag, ap = gv - mu_g, pv - mu_p
            align = 2 * ag * ap / (ag ** 2 + ap ** 2 + SVANET_EPS)
            per_pixel.append((align + 1) ** 2 / 4)
        per_pixel = np.asarray(per_pixel)
    sums = c @ per_pixel
    return float((sums / (np.asarray(voxels, dtype=np.float64) - 1 + SVANET_EPS)).sum() / c.shape[0])


def _svanet_block(case_rows: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """SvANet's seven numbers (and the per-class scores) of a set of images, each given by its rows."""
    n_classes = len(case_rows[0])
    inter, ap, ar, present = (np.zeros(n_classes) for _ in range(4))
    for rs in case_rows:
        for k, r in enumerate(rs):
            inter[k] += int(r["tp"])
            ap[k] += int(r["tp"]) + int(r["fp"])
            ar[k] += int(r["tp"]) + int(r["fn"])
            present[k] += int(r["tp"]) + int(r["fn"]) > 0
    scores = svanet_scores(inter, ap, ar, present)
    first = [rs[0] for rs in case_rows]
    em = svanet_e_measure([[int(r[k]) for k in ("fg_tp", "fg_fp", "fg_fn", "fg_tn")] for r in first],
                          [int(r["voxels"]) for r in first])
    mae = sum(int(r["abs_error"]) for r in first) / sum(int(r["voxels"]) for r in first) / len(first)
    m = scores["micro"]
    overall = {"micro_iou": m["iou"], "micro_dice": m["dice"], "e_measure": em, "mae": float(mae),
               "recall": m["recall"], "precision": m["precision"], "f2": m["f2"], "n_cases": len(case_rows)}
    return {"overall": overall, "scores": scores, "present": present, "areas": (inter, ap, ar)}


def svanet_tiny_table(case_rows: Sequence[Sequence[Mapping[str, Any]]], bins: Sequence[float] = SVANET_BINS) -> list[dict]:
    """SvANet's tiny-object table: the seven metrics on the images whose largest object is below each size.

    ``getKeepTinyIds`` keeps the images with ``size_pct < 100`` (empty masks included);
    ``traversalTinyRatio`` then, per threshold ``t``, takes those with ``size_pct < t``, skips an
    empty subset and stops after the first subset holding every kept image. (The authors' check
    ``KeepIdx.any()`` also skips a subset made of image 0 alone; svseg does not copy that slip.)
    """
    kept = [rs for rs in case_rows if float(rs[0]["size_pct"]) < max(bins)]
    table = []
    for t in bins:
        subset = [rs for rs in kept if float(rs[0]["size_pct"]) < t]
        if not subset:
            continue
        table.append({"below_pct": float(t), **_svanet_block(subset)["overall"]})
        if len(subset) == len(kept):
            break
    return table


def _by_case(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    cases: dict[str, list] = {}
    for r in rows:
        cases.setdefault(str(r["case"]), []).append(r)
    return list(cases.values())


def _class_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        if str(r["class"]) not in names:
            names.append(str(r["class"]))
    return names


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _summary_svanet(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    cases = _by_case(rows)
    names = _class_order(rows)
    if any([str(r["class"]) for r in rs] != names for rs in cases):
        raise ValueError("svanet: every case needs one row per class, in the same order.")
    block = _svanet_block(cases)
    inter, ap, ar = block["areas"]
    classes = {}
    for k, name in enumerate(names):
        entry = {m: float(v[k]) for m, v in block["scores"]["classes"].items()}
        entry.update(n_images_present=int(block["present"][k]), tp=int(inter[k]), fp=int(ap[k] - inter[k]),
                     fn=int(ar[k] - inter[k]), n_cases=len(cases))
        classes[name] = entry
    return {"classes": classes, "overall": {**block["overall"], "n_classes": len(names)},
            "tiny_objects": svanet_tiny_table(cases)}


def _summary_per_case_mean(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], std: bool = False) -> dict[str, Any]:
    classes = {}
    for name in _class_order(rows):
        rs = [r for r in rows if str(r["class"]) == name]
        entry: dict[str, Any] = {k: _mean([float(r[k]) for r in rs]) for k in keys}
        if std:
            entry.update({f"{k}_std": float(np.std([float(r[k]) for r in rs])) for k in keys})
        entry["n_cases"] = len(rs)
        classes[name] = entry
    overall: dict[str, Any] = {k: _mean([v[k] for v in classes.values()]) for k in keys}
    overall.update(n_cases=len(_by_case(rows)), n_classes=len(classes))
    return {"classes": classes, "overall": overall}


def _pooled(rs: Sequence[Mapping[str, Any]]) -> tuple[int, int, int, int]:
    return tuple(int(sum(int(r[k]) for r in rs)) for k in ("tp", "fp", "fn", "tn"))  # type: ignore[return-value]


def _summary_awesome(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = ("dice", "iou", "jaccard_index", "accuracy", "precision", "recall", "specificity")
    per_image = _summary_per_case_mean(rows, keys)
    classes = {}
    for name in _class_order(rows):
        rs = [r for r in rows if str(r["class"]) == name]
        tp, fp, fn, tn = _pooled(rs)
        classes[name] = {**_awesome_scores(tp, fp, fn, tn), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                         "n_cases": len(rs), "per_image_mean": per_image["classes"][name]}
    overall: dict[str, Any] = {k: _mean([v[k] for v in classes.values()]) for k in keys}
    overall.update(n_cases=len(_by_case(rows)), n_classes=len(classes), per_image_mean=per_image["overall"])
    return {"classes": classes, "overall": overall}


def _summary_afma(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    classes = {}
    for name in _class_order(rows):
        rs = [r for r in rows if str(r["class"]) == name]
        tp, fp, fn, tn = _pooled(rs)
        iou = tp / (tp + fp + fn) if tp + fp + fn else None  # the authors' code divides by zero here
        classes[name] = {"iou": iou, "accuracy": (tp + tn) / (tp + fp + fn + tn) if tp + fp + fn + tn else None,
                         "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n_cases": len(rs)}
    ious = [v["iou"] for v in classes.values() if v["iou"] is not None]
    accs = [v["accuracy"] for v in classes.values() if v["accuracy"] is not None]
    tp, fp, fn, _ = _pooled(rows)
    overall = {"mean_iou": _mean(ious), "global_iou": tp / (tp + fp + fn) if tp + fp + fn else None,
               "accuracy": _mean(accs), "n_classes_absent": len(classes) - len(ious),
               "n_cases": len(_by_case(rows)), "n_classes": len(classes)}
    return {"classes": classes, "overall": overall}


def protocol_summary(rows: Sequence[Mapping[str, Any]], protocol: str) -> dict[str, Any]:
    """The dataset-level summary of a paper protocol from its rows (:func:`protocol_case_rows`).

    * ``svanet``: per class (background included) IoU, Dice, precision, recall, F2 of the areas
      pooled over all images and ``n_images_present``; ``overall``: the "micro" (image-presence
      weighted) ``micro_iou``, ``micro_dice``, ``precision``, ``recall``, ``f2``, and ``e_measure``,
      ``mae`` over all images; ``tiny_objects``: :func:`svanet_tiny_table`.
    * ``uctransnet``: per class the mean over images of ``dice`` and ``iou`` (the sum divided by the
      number of test images, empty images included); overall the mean over classes.
    * ``awesome_unet``: per class the scores of the counts pooled over all images (torchmetrics
      accumulates its states over the test loader before ``compute``; these are the paper's numbers,
      not means of per-image scores, which are given under ``per_image_mean``).
    * ``msga``: per class mean and ``dice_std`` (numpy, ddof 0) over subjects; overall ``dice`` =
      the mean of the class means.
    * ``afma``: per class pooled ``iou = TP / (TP + FN + FP)`` and ``accuracy = (TP + TN) / N``;
      overall ``mean_iou`` (mean of the class IoUs), ``global_iou`` (pooled over classes) and
      ``accuracy`` (mean of the class accuracies). A class in no reference and no prediction of the
      whole set makes the authors' code divide by zero; here its IoU is null, it is left out of the
      means and counted in ``n_classes_absent``.
    """
    check_protocol(protocol)
    if not rows:
        raise ValueError("rows is empty: nothing to summarise.")
    if protocol == "svanet":
        out = _summary_svanet(rows)
    elif protocol == "uctransnet":
        out = _summary_per_case_mean(rows, ("dice", "iou"))
    elif protocol == "awesome_unet":
        out = _summary_awesome(rows)
    elif protocol == "msga":
        out = _summary_per_case_mean(rows, ("dice",), std=True)
    elif protocol == "afma":
        out = _summary_afma(rows)
    else:
        raise ValueError(f"{protocol!r} is not a paper protocol; use svseg.evaluation.summarize.")
    return {"protocol": protocol, "reproduces": PROTOCOL_SOURCES[protocol], **out}

