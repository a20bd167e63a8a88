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

from svseg.io import NIFTI_SUFFIXES, PathLike, atomic_save_figure, atomic_save_json, case_name, load_nifti, match_files
from svseg.runtime import progress_enabled

__all__ = [
    "CLASS_COLORS",
    "class_color",
    "SOURCES_FILE",
    "select_slices",
    "overlay_png",
    "overlay_size",
    "write_case_overlay",
    "write_overlays",
    "boxplot_png",
    "format_summary",
    "record_sources",
    "report",
]

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


def overlay_png(image: Any, ref: Any, pred: Any, out_path: str | os.PathLike, n_slices: int = 6, axis: int = 2,
                class_names: Sequence[str] | None = None, title: str | None = None, window: tuple[float, float] | None = None,
                spacing: Sequence[float] | None = None) -> Path:
    """Write a PNG with ``n_slices`` slices of ``image`` and the ref/pred label contours.

    Each class has its own colour (:func:`class_color`); reference contours are solid, predicted
    contours dashed; the legend names the classes and the two line styles. Slices are chosen by :func:`select_slices`. The PNG has a fixed size,
    :func:`overlay_size` (``n`` panels of 300x360 pixels).

    Args:
        image: 3D ``(H, W, D)`` or 2D ``(H, W)`` intensity array (tensor or numpy; a leading
            channel of 1 is dropped).
        ref: reference label map of the same shape, or ``None``.
        pred: predicted label map of the same shape, or ``None``.
        out_path: destination ``.png``.
        n_slices: number of slices to show (fewer if the volume has fewer slices).
        axis: slice axis of a 3D volume (2: axial for RAS-oriented NIfTI).
        class_names: names by label id (background first), listed in the title.
        title: figure title (default the file stem).
        window: (low, high) intensity display window; default the 1st-99th percentile.
        spacing: voxel size of the 3 axes, to draw anisotropic voxels with their true aspect.

    Returns:
        The destination path.

    Raises:
        ValueError: if the shapes differ or the image is not 2D/3D.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    img = _as_numpy(image)
    ref_a = _as_numpy(ref)
    pred_a = _as_numpy(pred)
    if img is None or img.ndim not in (2, 3):
        raise ValueError(f"image must be 2D or 3D, got shape {None if img is None else img.shape}.")
    if img.ndim == 2:
        img = img[..., None]
        ref_a = ref_a[..., None] if ref_a is not None else None
        pred_a = pred_a[..., None] if pred_a is not None else None
        axis = 2
    for name, arr in (("ref", ref_a), ("pred", pred_a)):
        if arr is not None and arr.shape != img.shape:
            raise ValueError(f"{name} has shape {arr.shape}, image {img.shape}: they must match.")
    if not 0 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}.")
    slices = select_slices(ref_a, pred_a, n_slices, axis=axis, shape=img.shape)
    finite = img[np.isfinite(img)]
    if window is None:
        lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    else:
        lo, hi = window
    if hi <= lo:
        hi = lo + 1.0

    aspect: Any = "equal"
    if spacing is not None:
        sp = [float(v) for v in list(spacing)[:3]]
        if len(sp) == 3 and all(v > 0 for v in sp):
            a0, a1 = (i for i in range(3) if i != axis)
            aspect = sp[a1] / sp[a0]  # displayed rows run along a1, columns along a0
    n = n_slices
    width, height = overlay_size(n)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    axes = fig.subplots(1, n, squeeze=False)[0]
    labels = sorted(set(np.unique(ref_a).tolist() if ref_a is not None else []) |
                    set(np.unique(pred_a).tolist() if pred_a is not None else []))
    labels = [int(v) for v in labels if v != 0]
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k >= len(slices):
            continue
        z = slices[k]
        take = [slice(None)] * 3
        take[axis] = z
        ax.imshow(np.take(img, z, axis=axis).T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest",
                  aspect=aspect)
        for arr, style in ((ref_a, "solid"), (pred_a, "dashed")):
            if arr is None:
                continue
            sl = np.take(arr, z, axis=axis).T
            for lab in labels:
                m = (sl == lab).astype(np.float32)
                if m.any() and not m.all():
                    ax.contour(m, levels=[0.5], colors=[class_color(lab)], linewidths=1.2, linestyles=style,
                               origin="lower")
        ax.set_title(f"slice {z}", fontsize=9)
    handles = [Line2D([0], [0], color=class_color(v), lw=2,
                      label=class_names[v] if class_names and v < len(class_names) else f"class {v}") for v in labels[:9]]
    if ref_a is not None:
        handles.append(Line2D([0], [0], color="black", lw=1.5, ls="solid", label="reference"))
    if pred_a is not None:
        handles.append(Line2D([0], [0], color="black", lw=1.5, ls="dashed", label="prediction"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    head = title if title is not None else Path(out_path).name.split(".")[0]
    if class_names:
        shown = [class_names[v] if v < len(class_names) else str(v) for v in labels]
        if shown:
            head += "  (" + ", ".join(shown[:8]) + (" ..." if len(shown) > 8 else "") + ")"
    fig.suptitle(head, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.1, wspace=0.03)
    return atomic_save_figure(fig, out_path, dpi=_DPI)


def write_case_overlay(image: Any, ref: Any, pred: Any, output_dir: str | os.PathLike, case: str,
                       class_names: Sequence[str] | None = None, n_slices: int = 6, axis: int = 2) -> Path:
    """``<output_dir>/overlays/<case>.png`` for one evaluated case held in memory.

    For evaluation loops that already have the image, reference and prediction (e.g. MONAI
    ``MetaTensor`` volumes with a leading channel); the spacing is read from the image's
    ``pixdim``/``affine`` metadata when present.
    """
    spacing = None
    meta = getattr(image, "meta", None)
    if meta is not None and "affine" in meta:
        aff = np.asarray(meta["affine"].cpu().numpy() if hasattr(meta["affine"], "cpu") else meta["affine"], dtype=float)
        spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0)).tolist()
    return overlay_png(image, ref, pred, Path(output_dir) / "overlays" / f"{case}.png", n_slices=n_slices, axis=axis,
                       class_names=class_names, title=str(case), spacing=spacing)


def _find_image(image_dir: Path, case: str) -> Path | None:
    """The image of ``case`` in ``image_dir``: same name, or with a ``_0000`` (nnU-Net) or
    ``_image``/``_img`` ending."""
    for stem in (case, f"{case}_0000", f"{case}_image", f"{case}_img", case.replace("label", "img")):
        for suf in NIFTI_SUFFIXES:
            p = image_dir / f"{stem}{suf}"
            if p.is_file():
                return p
    return None


def write_overlays(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike | None, image_dir: str | os.PathLike,
                   output_dir: str | os.PathLike, n_slices: int = 6, axis: int = 2,
                   class_names: Sequence[str] | None = None, cases: Sequence[str] | None = None,
                   progress: bool | None = None) -> list[Path]:
    """Write ``<output_dir>/overlays/<case>.png`` for each prediction with a matching image.

    Predictions are paired with references by :func:`svseg.io.match_files` (the same
    name rules as the evaluation); images are found in ``image_dir`` by case name (also with an
    nnU-Net ``_0000`` ending).

    Args:
        pred_dir: folder of predicted NIfTI label maps.
        ref_dir: folder of reference NIfTI label maps (``None``: prediction contours only).
        image_dir: folder of the NIfTI images.
        output_dir: evaluation output folder; overlays go to its ``overlays/`` subfolder.
        n_slices: slices per overlay.
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
        pairs = [(case_name(p), p, None) for p in sorted(pred_dir.iterdir()) if p.name.endswith(NIFTI_SUFFIXES)]
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
        image, _, spacing = load_nifti(ipath, np.float32)
        pred = load_nifti(ppath)[0]
        ref = load_nifti(rpath)[0] if rpath is not None else None
        if image.shape != pred.shape or (ref is not None and ref.shape != image.shape):
            warnings.warn(f"case {case}: image {image.shape}, prediction {pred.shape} and reference "
                          f"{None if ref is None else ref.shape} differ in shape; overlay skipped.", stacklevel=2)
            continue
        written.append(overlay_png(image, ref, pred, out / f"{case}.png", n_slices=n_slices, axis=axis,
                                   class_names=class_names, title=case, spacing=spacing))
    return written


def _read_metrics(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _hd95_in_voxels(summary: Mapping[str, Any]) -> bool:
    """Whether an evaluation's HD95 is in voxels: its ``summary.json`` says so (``units``), or,
    for summaries without units, its protocol is ``transunet``."""
    units = summary.get("units")
    if isinstance(units, Mapping) and "hd95" in units:
        return units["hd95"] == "voxels"
    return summary.get("protocol") == "transunet"


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


def format_summary(output_dir: str | os.PathLike) -> str:
    """A plain-text table of the per-class mean Dice and HD95 of an evaluation folder."""
    out = Path(output_dir)
    metrics = out / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist: run `svseg evaluate` into {out} first.")
    rows = _read_metrics(metrics)
    summary = _read_summary(out)
    protocol = summary.get("protocol")
    names = _class_order(rows)
    unit = "vox" if _hd95_in_voxels(summary) else "mm"
    lines = [f"evaluation {out} (protocol {protocol or 'unknown'}, {len({r.get('case') for r in rows})} cases)",
             f"{'class':<20s} {'Dice':>8s} {'HD95 ' + unit:>10s} {'n':>4s}"]
    all_d, all_h = [], []
    for n in names:
        d = [v for v in (_float(r["dice"]) for r in rows if r["class"] == n) if math.isfinite(v)]
        h = [v for v in (_float(r.get("hd95")) for r in rows if r["class"] == n) if math.isfinite(v)]
        md = float(np.mean(d)) if d else float("nan")
        mh = float(np.mean(h)) if h else float("nan")
        all_d.append(md)
        all_h.append(mh)
        lines.append(f"{n:<20s} {md:8.4f} {mh:10.2f} {len(d):4d}")
    fd = [v for v in all_d if math.isfinite(v)]
    fh = [v for v in all_h if math.isfinite(v)]
    lines.append(f"{'mean over classes':<20s} {np.mean(fd) if fd else float('nan'):8.4f} "
                 f"{np.mean(fh) if fh else float('nan'):10.2f}")
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
                                        hd95_unit="voxels" if _hd95_in_voxels({**summary, "protocol": protocol}) else "mm")
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
