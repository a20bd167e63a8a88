"""Pictures and summaries of an evaluation, so a user can look rather than read.

- :func:`overlay_png`: a few axial slices of one case with the ground-truth contours (green) and
  the predicted contours (red), with a legend.
- :func:`write_overlays`: one overlay PNG per case of a prediction folder.
- :func:`boxplot_png`: per-class Dice / HD95 box plot of metric rows or of a ``metrics.csv``
  (the one box plot of svseg; :func:`svseg.evaluation.write_report` draws it too).
- :func:`report`: (re)build the overlays and the box plot of an evaluation output folder and
  print its summary (``svseg report <output_dir>``).

Every file is written atomically (:mod:`svseg.io`). This module sits below
:mod:`svseg.evaluation` and never imports it: predictions are paired with references by
:func:`svseg.io.match_files`, the same rule the evaluation uses.

Example::

    from svseg.report import overlay_png, report

    overlay_png(image, ref, pred, "case0001.png", n_slices=4, class_names=["bg", "liver"])
    report("outputs/eval", pred_dir="outputs/pred", ref_dir="data/labels", image_dir="data/images")
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from svseg.io import LABEL_2D_SUFFIXES, MATCH_ENDINGS, NIFTI_SUFFIXES, PathLike, atomic_save_figure, atomic_save_json
from svseg.io import IMAGE_2D_SUFFIXES, case_name, is_image_2d, load_nifti, match_files, read_image_2d
from svseg.runtime import progress_enabled

__all__ = ["CLASS_COLORS", "class_color", "SOURCES_FILE", "select_slices", "overlay_png", "overlay_size",
           "write_case_overlay", "write_overlays", "boxplot_png", "format_summary", "record_sources", "report"]

# one colour per class id (matplotlib's tab10 without its grey); reference solid, prediction dashed
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def class_color(label: int) -> str:
    """The contour colour of class id ``label`` (1-based; the palette repeats after nine classes)."""
    return CLASS_COLORS[(int(label) - 1) % len(CLASS_COLORS)]
SOURCES_FILE = "report_sources.json"
_PANEL_INCHES = 3.0
_DPI = 100


def _as_numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    while arr.ndim > 3 and arr.shape[0] == 1:  # (1, H, W, D) channel-first
        arr = arr[0]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def select_slices(ref: np.ndarray | None, pred: np.ndarray | None, n_slices: int, axis: int = 2, shape: Sequence[int] | None = None) -> list[int]:
    """Pick ``n_slices`` slice indices along ``axis``: evenly spread over the slices that hold
    ground truth (or prediction, when the reference is empty), else over the whole volume."""
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}.")
    vol = ref if ref is not None else pred
    if vol is None and shape is None:
        raise ValueError("give ref, pred or shape.")
    depth = (vol.shape if vol is not None else tuple(shape))[axis]
    candidates: np.ndarray = np.arange(0)
    for mask in (ref, pred):
        if mask is None:
            continue
        other = tuple(i for i in range(mask.ndim) if i != axis)
        counts = (mask > 0).sum(axis=other)
        candidates = np.flatnonzero(counts)
        if candidates.size:
            break
    if candidates.size == 0:
        candidates = np.arange(depth)
    n = min(n_slices, candidates.size)
    # centres of n equal parts of the candidate list (avoids the thin first/last slices)
    picks = candidates[((np.arange(n) + 0.5) * candidates.size / n).astype(int)]
    return sorted({int(p) for p in picks})


def overlay_size(n_slices: int) -> tuple[int, int]:
    """(width, height) in pixels of an :func:`overlay_png` with ``n_slices`` panels."""
    return int(round(_PANEL_INCHES * n_slices * _DPI)), int(round((_PANEL_INCHES + 0.6) * _DPI))


def _label_2d(arr: np.ndarray | None) -> np.ndarray | None:
    """A label map with a leading channel of 1 dropped (``(1, H, W)`` -> ``(H, W)``)."""
    return arr[0] if arr is not None and arr.ndim == 3 and arr.shape[0] == 1 else arr


def _looks_2d(img: np.ndarray, ref: np.ndarray | None, pred: np.ndarray | None) -> bool:
    """Whether an overlay's image is a 2D image: ``(H, W)``, or ``(C, H, W)`` with C in 1, 3, 4 whose
    label maps are ``(H, W)`` (or ``(1, H, W)``). Without label maps a 3-axis array stays a volume."""
    if img.ndim == 2:
        return True
    labels = [_label_2d(a) for a in (ref, pred) if a is not None]
    return (img.ndim == 3 and img.shape[0] in (1, 3, 4) and bool(labels)
            and all(a.ndim == 2 and a.shape == img.shape[1:] for a in labels))


def _window(values: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    lo, hi = window if window is not None else (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def _rgb(img: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """``(3|4, H, W)`` -> ``(H, W, 3)`` floats in 0..1: 8-bit values / 255, 0..1 values as they are,
    anything else (16-bit, normalised intensities) through the display window."""
    rgb = np.moveaxis(np.asarray(img[:3], dtype=np.float64), 0, -1)
    finite = rgb[np.isfinite(rgb)]
    if window is None and finite.size and finite.min() >= 0 and finite.max() <= 255:
        rgb = rgb / (255.0 if finite.max() > 1 else 1.0)
    else:
        lo, hi = _window(rgb, window)
        rgb = (rgb - lo) / (hi - lo)
    return np.clip(np.nan_to_num(rgb), 0.0, 1.0)


def _draw_contours(ax: Any, ref_sl: np.ndarray | None, pred_sl: np.ndarray | None, labels: list[int],
                   origin: str | None) -> None:
    for arr, style in ((ref_sl, "solid"), (pred_sl, "dashed")):
        if arr is None:
            continue
        for lab in labels:
            m = (arr == lab).astype(np.float32)
            if m.any() and not m.all():
                ax.contour(m, levels=[0.5], colors=[class_color(lab)], linewidths=1.2, linestyles=style, origin=origin)


def _finish(fig: Any, labels: list[int], has_ref: bool, has_pred: bool, class_names: Sequence[str] | None,
            title: str | None, out_path: str | os.PathLike, n_panels: int) -> Path:
    """Legend (classes, reference/prediction line styles), title, layout; save atomically."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=class_color(v), lw=2,
                      label=class_names[v] if class_names and v < len(class_names) else f"class {v}") for v in labels[:9]]
    handles += [Line2D([0], [0], color="black", lw=1.5, ls=ls, label=what)
                for shown, ls, what in ((has_ref, "solid", "reference"), (has_pred, "dashed", "prediction")) if shown]
    if handles:
        # one panel is narrow: legend entries in rows of two there
        ncol = len(handles) if n_panels > 1 else min(len(handles), 2)
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9 if n_panels > 1 else 7, frameon=False)
    head = title if title is not None else Path(out_path).name.split(".")[0]
    if class_names:
        shown = [class_names[v] if v < len(class_names) else str(v) for v in labels]
        if shown:
            head += "  (" + ", ".join(shown[:8]) + (" ..." if len(shown) > 8 else "") + ")"
    fig.suptitle(head, fontsize=10)
    bottom = 0.1 if n_panels > 1 else 0.03 + 0.045 * math.ceil(len(handles) / 2)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=bottom, wspace=0.03)
    return atomic_save_figure(fig, out_path, dpi=_DPI)


def _present_labels(*maps: np.ndarray | None) -> list[int]:
    return sorted({int(v) for m in maps if m is not None for v in np.unique(m)} - {0})


def _draw_2d(ax: Any, img: np.ndarray, ref_a: np.ndarray | None, pred_a: np.ndarray | None, labels: list[int],
             window: tuple[float, float] | None, spacing: Sequence[float] | None) -> None:
    """One 2D image (grey ``(H, W)``/``(C, H, W)``, colour ``(3|4, H, W)``) as the file shows it, with contours."""
    sp = [float(v) for v in list(spacing)[:2]] if spacing is not None else []
    aspect: Any = sp[0] / sp[1] if len(sp) == 2 and min(sp) > 0 else "equal"  # height / width of one pixel
    if img.ndim == 3 and img.shape[0] in (3, 4):
        ax.imshow(_rgb(img, window), interpolation="nearest", aspect=aspect)
    else:
        grey = img if img.ndim == 2 else img[0]
        lo, hi = _window(grey, window)
        ax.imshow(grey, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", aspect=aspect)
    _draw_contours(ax, ref_a, pred_a, labels, origin=None)  # contour's default matches imshow's pixel centres


def overlay_png(image: Any, ref: Any, pred: Any, out_path: str | os.PathLike, n_slices: int = 6, axis: int = 2,
                class_names: Sequence[str] | None = None, title: str | None = None, window: tuple[float, float] | None = None,
                spacing: Sequence[float] | None = None, image_2d: bool | None = None) -> Path:
    """Write a PNG with ``n_slices`` slices of ``image`` and the ref/pred label contours.

    Each class has its own colour (:func:`class_color`); reference contours are solid, predicted
    contours dashed; the legend names the classes and the two line styles. Slices are chosen by :func:`select_slices`. The PNG has a fixed size,
    :func:`overlay_size` (``n`` panels of 300x360 pixels).

    A 2D image gets one panel (:func:`overlay_size` of 1), drawn as the file shows it (first row at
    the top); an RGB image is drawn in colour (8-bit values as they are, others through the window).

    Args:
        image: 3D ``(H, W, D)`` volume, or a 2D image: ``(H, W)`` grey or ``(C, H, W)`` channel first
            (C = 3 or 4: colour; tensor or numpy; a leading channel of 1 is dropped).
        ref: reference label map of the same shape (2D: ``(H, W)`` or ``(1, H, W)``), or ``None``.
        pred: predicted label map of the same shape, or ``None``.
        out_path: destination ``.png``.
        n_slices: number of slices to show (fewer if the volume has fewer slices; 2D: one).
        axis: slice axis of a 3D volume (2: axial for RAS-oriented NIfTI).
        class_names: names by label id (background first), listed in the title.
        title: figure title (default the file stem).
        window: (low, high) intensity display window; default the 1st-99th percentile.
        spacing: voxel size of the 3 axes (2D: row, column), to draw anisotropic voxels with their
            true aspect.
        image_2d: whether ``image`` is a 2D image; ``None`` guesses: ``(H, W)``, or ``(C, H, W)``
            with C in 1, 3, 4 and ``(H, W)`` label maps.

    Returns:
        The destination path.

    Raises:
        ValueError: if the shapes differ or the image is not 2D/3D.
    """
    from matplotlib.figure import Figure

    img, ref_a, pred_a = _as_numpy(image), _as_numpy(ref), _as_numpy(pred)
    if img is None or img.ndim not in (2, 3):
        raise ValueError(f"image must be 2D or 3D, got shape {None if img is None else img.shape}.")
    image_2d = _looks_2d(img, ref_a, pred_a) if image_2d is None else image_2d
    if image_2d:
        ref_a, pred_a = _label_2d(ref_a), _label_2d(pred_a)
    shape = img.shape[1:] if image_2d and img.ndim == 3 else img.shape
    for name, arr in (("ref", ref_a), ("pred", pred_a)):
        if arr is not None and arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, image {shape}: they must match.")
    if not 0 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}.")
    labels = _present_labels(ref_a, pred_a)
    n = 1 if image_2d else n_slices
    width, height = overlay_size(n)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax in axes:
        ax.set_axis_off()
    if image_2d:
        _draw_2d(axes[0], img, ref_a, pred_a, labels, window, spacing)
        return _finish(fig, labels, ref_a is not None, pred_a is not None, class_names, title, out_path, 1)
    slices = select_slices(ref_a, pred_a, n_slices, axis=axis, shape=img.shape)
    lo, hi = _window(img, window)
    aspect: Any = "equal"
    if spacing is not None:
        sp = [float(v) for v in list(spacing)[:3]]
        if len(sp) == 3 and all(v > 0 for v in sp):
            a0, a1 = (i for i in range(3) if i != axis)
            aspect = sp[a1] / sp[a0]  # displayed rows run along a1, columns along a0
    for ax, z in zip(axes, slices):
        ax.imshow(np.take(img, z, axis=axis).T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest",
                  aspect=aspect)
        _draw_contours(ax, None if ref_a is None else np.take(ref_a, z, axis=axis).T,
                       None if pred_a is None else np.take(pred_a, z, axis=axis).T, labels, origin="lower")
        ax.set_title(f"slice {z}", fontsize=9)
    return _finish(fig, labels, ref_a is not None, pred_a is not None, class_names, title, out_path, n)


def write_case_overlay(image: Any, ref: Any, pred: Any, output_dir: str | os.PathLike, case: str,
                       class_names: Sequence[str] | None = None, n_slices: int = 6, axis: int = 2,
                       image_2d: bool | None = None) -> Path:
    """``<output_dir>/overlays/<case>.png`` for one evaluated case held in memory.

    For evaluation loops that already have the image, reference and prediction (e.g. MONAI
    ``MetaTensor`` volumes with a leading channel); the spacing is read from the image's
    ``pixdim``/``affine`` metadata when present. A 2D image (``image_2d``, or guessed as
    :func:`overlay_png` does: a ``(C, H, W)`` image with ``(1, H, W)`` label maps) gets one panel,
    in colour for RGB.
    """
    spacing = None
    meta = getattr(image, "meta", None)
    if meta is not None and "affine" in meta:
        aff = np.asarray(meta["affine"].cpu().numpy() if hasattr(meta["affine"], "cpu") else meta["affine"], dtype=float)
        nd = aff.shape[0] - 1  # 3 for a volume, 2 for a 2D image's 3x3 affine
        spacing = np.sqrt((aff[:nd, :nd] ** 2).sum(axis=0)).tolist()
    return overlay_png(image, ref, pred, Path(output_dir) / "overlays" / f"{case}.png", n_slices=n_slices, axis=axis,
                       class_names=class_names, title=str(case), spacing=spacing, image_2d=image_2d)


def _read_2d(path: Path, mask: bool) -> np.ndarray:
    """A 2D image file as ``(C, H, W)``, or a mask as ``(H, W)`` class ids (:func:`svseg.io.read_image_2d`)."""
    arr = read_image_2d(path, mask=mask)
    return arr[0].astype(np.int64) if mask else arr


def _find_image(image_dir: Path, case: str) -> Path | None:
    """The image of ``case`` in ``image_dir`` (NIfTI or 2D): same name, or with a ``_0000`` (nnU-Net)
    or ``_image``/``_img`` ending; a case id ending as a prediction (``_seg``, ``_pred``) also without it."""
    short = next((case[: -len(e)] for e in MATCH_ENDINGS if case.endswith(e) and len(case) > len(e)), case)
    for base in dict.fromkeys((case, short)):
        for stem in (base, f"{base}_0000", f"{base}_image", f"{base}_img", base.replace("label", "img")):
            for suf in NIFTI_SUFFIXES + IMAGE_2D_SUFFIXES:
                p = image_dir / f"{stem}{suf}"
                if p.is_file():
                    return p
    return None


def _load_case(ipath: Path, ppath: Path, rpath: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any, bool]:
    """``(image, pred, ref, spacing, is_2d)`` of one overlay; a 2D prediction file makes a 2D case."""
    if is_image_2d(ppath):
        image = _read_2d(ipath, mask=False) if is_image_2d(ipath) else load_nifti(ipath, np.float32)[0][None]
        return image, _read_2d(ppath, True), (None if rpath is None else _read_2d(rpath, True)), None, True
    image, _, spacing = load_nifti(ipath, np.float32)
    return image, load_nifti(ppath)[0], (None if rpath is None else load_nifti(rpath)[0]), spacing, False


def write_overlays(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike | None, image_dir: str | os.PathLike,
                   output_dir: str | os.PathLike, n_slices: int = 6, axis: int = 2,
                   class_names: Sequence[str] | None = None, cases: Sequence[str] | None = None,
                   progress: bool | None = None) -> list[Path]:
    """Write ``<output_dir>/overlays/<case>.png`` for each prediction with a matching image.

    Predictions are paired with references by :func:`svseg.io.match_files` (the same
    name rules as the evaluation); images are found in ``image_dir`` by case name (also with an
    nnU-Net ``_0000`` ending). 2D predictions (PNG, BMP, TIFF) get one panel over their 2D image
    (PNG, JPEG, BMP, TIFF; colour images in colour).

    Args:
        pred_dir: folder of predicted label maps (NIfTI, or 2D files).
        ref_dir: folder of reference label maps (``None``: prediction contours only).
        image_dir: folder of the images (NIfTI, or 2D files).
        output_dir: evaluation output folder; overlays go to its ``overlays/`` subfolder.
        n_slices: slices per overlay (3D).
        axis: slice axis.
        class_names: names by label id.
        cases: only these cases.
        progress: tqdm bar (default: only on an interactive terminal).

    Returns:
        The written PNG paths.
    """
    pred_dir, image_dir, out = Path(pred_dir), Path(image_dir), Path(output_dir) / "overlays"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image_dir {str(image_dir)!r} is not a folder.")
    if ref_dir is not None:
        pairs: list[tuple[str, Path, Path | None]] = list(match_files(pred_dir, ref_dir, allow_missing=True))
    else:
        if not pred_dir.is_dir():
            raise FileNotFoundError(f"pred_dir {str(pred_dir)!r} is not a folder.")
        pairs = [(case_name(p), p, None) for p in sorted(pred_dir.iterdir())
                 if p.name.lower().endswith(NIFTI_SUFFIXES + LABEL_2D_SUFFIXES)]
    if cases is not None:
        wanted = set(cases)
        pairs = [t for t in pairs if t[0] in wanted]
    if progress is None:
        progress = progress_enabled()
    written = []
    for case, ppath, rpath in tqdm(pairs, desc="overlays", unit="case", disable=not progress):
        ipath = _find_image(image_dir, case)
        if ipath is None and rpath is not None:
            ipath = _find_image(image_dir, case_name(rpath))
        if ipath is None:
            ipath = _find_image(image_dir, case_name(ppath))
        if ipath is None:
            warnings.warn(f"no image for case {case} in {image_dir}; overlay skipped.", stacklevel=2)
            continue
        try:
            image, pred, ref, spacing, two_d = _load_case(ipath, ppath, rpath)
        except ValueError as e:
            warnings.warn(f"case {case}: {e} Overlay skipped.", stacklevel=2)
            continue
        shape = image.shape[1:] if two_d else image.shape
        if shape != pred.shape or (ref is not None and ref.shape != shape):
            warnings.warn(f"case {case}: image {shape}, prediction {pred.shape} and reference "
                          f"{None if ref is None else ref.shape} differ in shape; overlay skipped.", stacklevel=2)
            continue
        written.append(overlay_png(image, ref, pred, out / f"{case}.png", n_slices=n_slices, axis=axis,
                                   class_names=class_names, title=case, spacing=spacing, image_2d=two_d))
    return written


def _read_metrics(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _hd95_unit(summary: Mapping[str, Any]) -> str:
    """``"voxels"``, ``"pixels"`` or ``"mm"``: an evaluation's HD95 unit as its ``summary.json`` says
    (``units``), or, for summaries without units, ``"voxels"`` for the ``transunet`` protocol."""
    units = summary.get("units")
    if isinstance(units, Mapping) and "hd95" in units:
        return units["hd95"] if units["hd95"] in ("voxels", "pixels") else "mm"
    return "voxels" if summary.get("protocol") == "transunet" else "mm"


def _read_summary(output_dir: Path) -> dict:
    path = output_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _class_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Class names in order of first appearance."""
    return list(dict.fromkeys(r["class"] for r in rows))


def boxplot_png(metrics: PathLike | Sequence[Mapping[str, Any]], out_path: PathLike, protocol: str | None = None,
                hd95_unit: str | None = None) -> Path:
    """Per-class box plots of Dice and HD95.

    Args:
        metrics: metric rows (``{case, class, dice, hd95, ...}``, e.g. from
            :func:`svseg.evaluation.evaluate_case`) or an evaluation ``metrics.csv`` holding them.
            Non-finite values (an empty reference, a missed class) are left out of the boxes.
        out_path: destination ``.png``.
        protocol: protocol name for the title.
        hd95_unit: unit of the HD95 axis; default ``voxels`` for ``transunet``, else ``mm``.

    Returns:
        The destination path.

    Raises:
        ValueError: no rows, or no ``class`` / ``dice`` column.
    """
    from matplotlib.figure import Figure

    from_file = isinstance(metrics, (str, os.PathLike))
    source = str(metrics) if from_file else "the metric rows"
    rows = _read_metrics(Path(metrics)) if from_file else list(metrics)
    if not rows:
        raise ValueError(f"{source} holds no rows.")
    for col in ("class", "dice"):
        if col not in rows[0]:
            raise ValueError(f"{source} has no {col!r} column.")
    names = _class_order(rows)
    dice = [[_float(r["dice"]) for r in rows if r["class"] == n] for n in names]
    hd = [[_float(r.get("hd95")) for r in rows if r["class"] == n] for n in names]
    dice = [[v for v in d if math.isfinite(v)] or [np.nan] for d in dice]
    hd = [[v for v in d if math.isfinite(v)] or [np.nan] for d in hd]
    unit = hd95_unit or ("voxels" if protocol == "transunet" else "mm")
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 3), 4.5), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, data, label in ((axes[0], dice, "Dice"), (axes[1], hd, f"HD95 [{unit}]")):
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    n_cases = len({r.get("case") for r in rows})
    fig.suptitle(f"svseg evaluation{f', protocol {protocol}' if protocol else ''}, {n_cases} cases")
    fig.tight_layout()
    return atomic_save_figure(fig, out_path, dpi=100)


def _micro(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Dataset-level Dice and IoU of the pooled ``tp, fp, fn`` columns (NaN without them)."""
    tp, fp, fn = (sum(_float(r.get(k)) for r in rows) for k in ("tp", "fp", "fn"))
    union = tp + fp + fn
    if not rows or not math.isfinite(union) or union == 0:
        return float("nan"), float("nan")
    return 2 * tp / (union + tp), tp / union


def format_summary(output_dir: str | os.PathLike) -> str:
    """A plain-text table of an evaluation folder: per class the mean Dice, IoU and HD95 over cases,
    the number of cases, and the dataset-level Dice and IoU of the TP/FP/FN pooled over all cases.
    For a paper's protocol (``summary.json`` names the code it ``reproduces``): its per-class and
    overall numbers as ``summary.json`` holds them, and SvANet's tiny-object table."""
    out = Path(output_dir)
    metrics = out / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist: run `svseg evaluate` into {out} first.")
    rows = _read_metrics(metrics)
    summary = _read_summary(out)
    protocol = summary.get("protocol")
    if summary.get("reproduces"):  # a paper's protocol: print its dataset-level numbers as summary.json has them
        def _cell(v):
            return f"{v:10.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{'-':>10s}"
        overall = {k: v for k, v in summary.get("overall", {}).items() if not isinstance(v, Mapping)}
        lines = [f"evaluation {out} (protocol {protocol}, {overall.get('n_cases', '?')} cases)",
                 f"reproduces: {summary['reproduces']}"]
        classes = summary.get("classes", {})
        keys = [k for k in next(iter(classes.values()), {}) if k not in ("tp", "fp", "fn", "tn", "n_cases")
                and not isinstance(next(iter(classes.values()))[k], Mapping)]
        lines.append(f"{'class':<20s} " + " ".join(f"{k[:10]:>10s}" for k in keys))
        for name, entry in classes.items():
            lines.append(f"{name:<20s} " + " ".join(_cell(entry.get(k)) for k in keys))
        lines.append("overall: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in overall.items()))
        tiny = summary.get("tiny_objects") or []
        if tiny:
            cols = [k for k in tiny[0] if k not in ("below_pct", "n_cases")]
            lines.append(f"{'images below':<20s} " + " ".join(f"{k[:10]:>10s}" for k in cols) + f" {'n':>5s}")
            for t in tiny:
                lines.append(f"{'< ' + format(t['below_pct'], 'g') + ' %':<20s} "
                             + " ".join(_cell(t.get(k)) for k in cols) + f" {t.get('n_cases', 0):5d}")
        return "\n".join(lines)
    names = _class_order(rows)
    unit = {"voxels": "vox", "pixels": "px"}.get(_hd95_unit(summary), "mm")
    lines = [f"evaluation {out} (protocol {protocol or 'unknown'}, {len({r.get('case') for r in rows})} cases)",
             f"{'class':<20s} {'Dice':>8s} {'IoU':>8s} {'HD95 ' + unit:>10s} {'n':>4s}   "
             f"{'micro Dice':>10s} {'micro IoU':>9s}"]
    table = []
    for n in names:
        rs = [r for r in rows if r["class"] == n]
        cols = [[v for v in (_float(r.get(k)) for r in rs) if math.isfinite(v)] for k in ("dice", "iou", "hd95")]
        means = [float(np.mean(c)) if c else float("nan") for c in cols]
        table.append((means, _micro(rs)))
        lines.append(f"{n:<20s} {means[0]:8.4f} {means[1]:8.4f} {means[2]:10.2f} {len(cols[0]):4d}   "
                     f"{table[-1][1][0]:10.4f} {table[-1][1][1]:9.4f}")

    def _mean(values):
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    m = [_mean([t[0][i] for t in table]) for i in range(3)] + [_mean([t[1][i] for t in table]) for i in range(2)]
    lines.append(f"{'mean over classes':<20s} {m[0]:8.4f} {m[1]:8.4f} {m[2]:10.2f} {'':4s}   {m[3]:10.4f} {m[4]:9.4f}")
    lines.append("Dice, IoU, HD95: means over cases; micro: TP/FP/FN pooled over all cases (dataset level, as SvANet)")
    return "\n".join(lines)


def record_sources(output_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
                   ref_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
                   protocol: str | None = None) -> Path:
    """Remember where an evaluation's files came from (``report_sources.json``), so that
    ``svseg report <output_dir>`` can rebuild the overlays without being told again."""
    src = {k: (str(Path(v).absolute()) if v is not None else None)
           for k, v in (("pred_dir", pred_dir), ("ref_dir", ref_dir), ("image_dir", image_dir))}
    src["protocol"] = protocol
    return atomic_save_json(src, Path(output_dir) / SOURCES_FILE)


def report(output_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
           ref_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
           n_slices: int = 6, axis: int = 2, boxplot: bool = True, overlays: bool = True,
           print_summary: bool = True, class_names: Sequence[str] | None = None) -> dict:
    """(Re)build the pictures of an evaluation output folder and print its summary.

    Reads ``metrics.csv`` (and ``summary.json``) in ``output_dir``; rewrites ``boxplot.png``;
    writes ``overlays/<case>.png`` when the images are known (``image_dir``, or the folders
    recorded in ``report_sources.json`` by ``svseg evaluate --images``); prints a per-class table.

    Args:
        output_dir: evaluation output folder (holding ``metrics.csv``).
        pred_dir: predictions folder (default: recorded one, else ``<output_dir>/predictions``).
        ref_dir: references folder (default: recorded one).
        image_dir: images folder (default: recorded one); without it no overlays are drawn.
        n_slices: slices per overlay.
        axis: slice axis.
        boxplot: rebuild ``boxplot.png``.
        overlays: build the overlays when possible.
        print_summary: print the table to stdout.
        class_names: names by label id for the overlay titles (default from ``summary.json``).

    Returns:
        ``{"boxplot": path | None, "overlays": [paths], "summary": text}``.

    Raises:
        FileNotFoundError: if ``output_dir`` has no ``metrics.csv``.
    """
    out = Path(output_dir)
    if not (out / "metrics.csv").is_file():
        raise FileNotFoundError(f"{out / 'metrics.csv'} does not exist: run `svseg evaluate --output {out}` first.")
    sources: dict = {}
    if (out / SOURCES_FILE).is_file():
        sources = json.loads((out / SOURCES_FILE).read_text())
    summary = _read_summary(out)
    protocol = summary.get("protocol") or sources.get("protocol")
    pred_dir = pred_dir or sources.get("pred_dir") or ((out / "predictions") if (out / "predictions").is_dir() else None)
    ref_dir = ref_dir or sources.get("ref_dir")
    image_dir = image_dir or sources.get("image_dir")
    if class_names is None and isinstance(summary.get("classes"), (list, dict)):
        cls = summary["classes"]
        names = list(cls.keys()) if isinstance(cls, Mapping) else [str(c) for c in cls]
        class_names = ["background", *names] if names and names[0] != "background" else names
    result: dict[str, Any] = {"boxplot": None, "overlays": []}
    if boxplot:
        result["boxplot"] = boxplot_png(out / "metrics.csv", out / "boxplot.png", protocol=protocol,
                                        hd95_unit=_hd95_unit({**summary, "protocol": protocol}))
    if overlays and pred_dir is not None and image_dir is not None:
        result["overlays"] = write_overlays(pred_dir, ref_dir, image_dir, out, n_slices=n_slices, axis=axis,
                                            class_names=class_names)
    elif (out / "overlays").is_dir() and any((out / "overlays").glob("*.png")):
        result["overlays"] = sorted((out / "overlays").glob("*.png"))  # kept as they are
    elif overlays and print_summary:
        print("no overlays: pass --images (and --pred/--ref) to draw them.")
    text = format_summary(out)
    if print_summary:
        print(text)
        if result["boxplot"]:
            print(f"box plot: {result['boxplot']}")
        if result["overlays"]:
            print(f"overlays: {len(result['overlays'])} PNG in {out / 'overlays'}")
    result["summary"] = text
    return result
