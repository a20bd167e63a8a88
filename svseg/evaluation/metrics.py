"""Volume metrics for svseg: Dice, HD95 and ASSD in two named protocols.

Two protocols are implemented, on whole volumes, per case and class:

``transunet``
    reproduces the numbers published with TransUNet and its followers (MSA2Net, ...):
    ``medpy.metric.binary.dc`` and ``medpy.metric.binary.hd95`` without voxel spacing
    (HD95 in voxel units). medpy's HD95 pools the two directed surface-distance sets and
    takes the 95th percentile of the pooled set. A class that is predicted but absent from the
    reference scores ``(dice, hd95) = (1, 0)``, an empty prediction scores ``(0, 0)``
    (``calculate_metric_percase`` of the TransUNet code).
``standard``
    spacing-aware HD95 in physical units as MONAI defines it
    (``monai.metrics.compute_hausdorff_distance(percentile=95)``: the maximum of the two directed
    95th percentiles), the symmetric average surface distance (``compute_average_surface_distance
    (symmetric=True)``: the mean of the pooled distances), and NaN for an empty reference.

Both protocols give IoU (Jaccard) next to Dice, with the same empty rules as their Dice
(:func:`case_iou`; IoU = Dice / (2 - Dice) on every case), and the overlap counts ``tp, fp, fn``
(:func:`overlap_counts`) from which :func:`micro_scores` forms the dataset-level ("micro") Dice and
IoU of SvANet's tables: counts summed over all images first, one ratio at the end.

Everything here works on any number of axes: 2D images and 3D volumes alike (a spacing then has
one value per axis).

Both protocols share the same surface definition: a mask XOR its binary erosion with a
connectivity-1 structuring element, with everything outside the array counted as background
(so objects touching the array border have a surface there). Distances go from each surface
voxel of one mask to the nearest surface voxel of the other.

Speed: every computation is restricted to the bounding box of the union of the two masks
plus one voxel of margin. Erosion there equals erosion on the full array (the margin is
background, and where the box meets the array border it is the array border), and the nearest
surface voxel of either mask always lies inside the box. The nearest-surface distances are then
found with a KD-tree over the surface-voxel coordinates (or, ``method="edt"``, the Euclidean
distance transform of the cropped box). medpy computes the distance transform on the full volume;
in voxel units both give the same float64 values (square root of an exact integer sum of squares).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "PROTOCOLS",
    "bounding_box",
    "normalize_spacing",
    "dice",
    "iou",
    "overlap_counts",
    "case_iou",
    "micro_scores",
    "surface",
    "surface_distances",
    "hd95_pooled",
    "hd95_max_directed",
    "average_symmetric_surface_distance",
    "transunet_case_metrics",
    "standard_case_metrics",
]

#: names of the evaluation protocols
PROTOCOLS = ("standard", "transunet")


def _as_bool(mask) -> np.ndarray:
    """Return ``mask`` as a numpy boolean array (non-zero = object), accepting torch tensors."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def normalize_spacing(spacing, ndim: int) -> np.ndarray | None:
    """Return ``spacing`` as a float64 vector of length ``ndim`` (a scalar applies to every axis)."""
    if spacing is None:
        return None
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim:
        raise ValueError(f"spacing must have one value or {ndim} values (one per axis), got {sp.size}.")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be finite and positive, got {sp.tolist()}.")
    return sp


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of the non-zero voxels of ``mask``, grown by ``margin``.

    The box is clipped to the array. Returns ``None`` for an empty mask.
    """
    mask = np.asarray(mask)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other) if other else mask)
        if nz.size == 0:
            return None
        box.append(slice(max(int(nz[0]) - margin, 0), min(int(nz[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def dice(pred, ref) -> float:
    """Dice coefficient ``2|A∩B| / (|A|+|B|)`` of two binary masks, as ``medpy.metric.binary.dc``.

    Two empty masks give 1.0 (medpy's convention). The protocols apply their own empty rules on top.
    """
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    size = np.count_nonzero(p) + np.count_nonzero(r)
    if size == 0:
        return 1.0
    return 2.0 * np.count_nonzero(p & r) / float(size)


def iou(pred, ref) -> float:
    """IoU (Jaccard index) ``|A∩B| / |A∪B|`` of two binary masks; two empty masks give 1.0, as :func:`dice`."""
    tp, fp, fn = overlap_counts(pred, ref)
    union = tp + fp + fn
    return 1.0 if union == 0 else tp / float(union)


def overlap_counts(pred, ref) -> tuple[int, int, int]:
    """``(tp, fp, fn)``: voxels in both masks, in ``pred`` only, in ``ref`` only."""
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    tp = int(np.count_nonzero(p & r))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp


def case_iou(tp: int, fp: int, fn: int, protocol: str) -> float:
    """IoU of one class in one case from its overlap counts, with the empty rules of the protocol's Dice.

    ``standard``: NaN for an empty reference (``tp + fn == 0``, predicted or not), as its Dice.
    ``transunet``: 1.0 for a class predicted but absent from the reference, 0.0 for an empty
    prediction (also when the reference is empty too), as TransUNet's Dice. Otherwise
    ``tp / (tp + fp + fn)``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    pred_any, ref_any = tp + fp > 0, tp + fn > 0
    if protocol == "standard" and not ref_any:
        return float("nan")
    if protocol == "transunet" and not (pred_any and ref_any):
        return 1.0 if pred_any else 0.0
    return tp / float(tp + fp + fn)


def micro_scores(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    """Dataset-level ("micro") ``(dice, iou)`` from overlap counts summed over many cases.

    ``Dice = 2TP / (2TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``: SvANet's tables accumulate the
    intersection and union areas over the whole test set before dividing, so a large image weighs
    more than a small one (unlike the per-case mean). ``(None, None)`` when every count is 0 (the
    class appears nowhere). Neither MONAI's ``DiceMetric``/``MeanIoU`` (means of per-image values)
    nor scipy offer this pooled form.
    """
    union = tp + fp + fn
    if union == 0:
        return None, None
    return 2.0 * tp / float(union + tp), tp / float(union)


def surface(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Surface voxels of a binary mask: the mask XOR its binary erosion (outside = background)."""
    mask = _as_bool(mask)
    if mask.ndim == 0:
        mask = mask.reshape(1)
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)


def _cropped(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    box = bounding_box(pred | ref, margin=1)
    if box is None:
        return pred, ref
    return pred[box], ref[box]


def surface_distances(
    pred,
    ref,
    spacing: Sequence[float] | float | None = None,
    connectivity: int = 1,
    crop: bool = True,
    method: str = "kdtree",
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty binary masks.

    Args:
        pred: binary mask (numpy array or tensor, any number of dimensions).
        ref: binary mask of the same shape.
        spacing: voxel size per axis (or one value for all); ``None`` means voxel units.
        connectivity: connectivity of the erosion structuring element (1 = faces only, as medpy
            and MONAI).
        crop: restrict the computation to the bounding box of ``pred | ref`` plus one voxel (exact;
            ``False`` computes on the full arrays, for checking).
        method: ``"kdtree"`` (nearest surface voxel by a KD-tree over the surface coordinates, the
            default: fastest, cost grows with the surface area) or ``"edt"`` (Euclidean distance
            transform of the cropped box, medpy's method; cost grows with the box volume). Both give
            ``sqrt(sum((d_i * spacing_i)**2))`` for the nearest surface voxel: identical values in voxel
            units, equal to rounding (1e-15 relative) with a spacing.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: float64 distances from every surface voxel of ``pred``
        to the nearest surface voxel of ``ref``, and the reverse, in C order of the voxels.

    Raises:
        ValueError: if the shapes differ or either mask is empty.
    """
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    if p.ndim == 0:
        p, r = p.reshape(1), r.reshape(1)
    if not p.any():
        raise ValueError("pred is empty: surface distances need a non-empty prediction mask.")
    if not r.any():
        raise ValueError("ref is empty: surface distances need a non-empty reference mask.")
    if method not in ("kdtree", "edt"):
        raise ValueError(f"method must be 'kdtree' or 'edt', got {method!r}.")
    sp = normalize_spacing(spacing, p.ndim)
    if crop:
        p, r = _cropped(p, r)
    p_border = surface(p, connectivity)
    r_border = surface(r, connectivity)
    if method == "edt":
        sp_args = {} if sp is None else {"sampling": sp}
        d_pr = ndimage.distance_transform_edt(~r_border, **sp_args)[p_border]
        d_rp = ndimage.distance_transform_edt(~p_border, **sp_args)[r_border]
        return d_pr, d_rp
    from scipy.spatial import cKDTree

    p_pts = np.argwhere(p_border).astype(np.float64)
    r_pts = np.argwhere(r_border).astype(np.float64)
    if sp is not None:
        p_pts *= sp
        r_pts *= sp
    d_pr = cKDTree(r_pts, leafsize=32).query(p_pts, k=1)[0]
    d_rp = cKDTree(p_pts, leafsize=32).query(r_pts, k=1)[0]
    return np.asarray(d_pr, dtype=np.float64), np.asarray(d_rp, dtype=np.float64)


def hd95_pooled(pred, ref, spacing=None, connectivity: int = 1) -> float:
    """HD95 as medpy's ``hd95``: 95th percentile of both directed distance sets pooled.

    Both masks must be non-empty (``ValueError`` otherwise). Identical to
    ``medpy.metric.binary.hd95(pred, ref, voxelspacing=spacing, connectivity=connectivity)``.
    """
    d_pr, d_rp = surface_distances(pred, ref, spacing, connectivity)
    return float(np.percentile(np.hstack((d_pr, d_rp)), 95))


def hd95_max_directed(pred, ref, spacing=None, connectivity: int = 1) -> float:
    """HD95 as MONAI: the maximum of the two directed 95th percentiles (linear interpolation).

    Both masks must be non-empty (``ValueError`` otherwise).
    """
    d_pr, d_rp = surface_distances(pred, ref, spacing, connectivity)
    return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))


def average_symmetric_surface_distance(pred, ref, spacing=None, connectivity: int = 1) -> float:
    """ASSD as MONAI's ``compute_average_surface_distance(symmetric=True)``: mean of the pooled distances."""
    d_pr, d_rp = surface_distances(pred, ref, spacing, connectivity)
    return float(np.concatenate((d_pr, d_rp)).mean())


def transunet_case_metrics(pred, ref) -> tuple[float, float]:
    """``(dice, hd95)`` of one class in one case, exactly as TransUNet's ``calculate_metric_percase``.

    medpy ``dc`` and ``hd95`` without spacing when both masks are non-empty; ``(1, 0)`` when the
    class is predicted but absent from the reference; ``(0, 0)`` when the prediction is empty.
    """
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    p_any, r_any = bool(p.any()), bool(r.any())
    if p_any and r_any:
        p, r = _cropped(p, r)
        return dice(p, r), hd95_pooled(p, r)
    if p_any:
        return 1.0, 0.0
    return 0.0, 0.0


def standard_case_metrics(pred, ref, spacing=None) -> dict[str, float]:
    """Dice, HD95 (max of directed 95th percentiles) and ASSD of one class in one case, MONAI style.

    * empty reference: every metric is NaN (the caller counts these cases);
    * non-empty reference, empty prediction: Dice 0, HD95 and ASSD ``inf``. MONAI's ASSD and plain
      Hausdorff distance are ``inf`` here too; its HD95 is NaN, only because ``torch.quantile`` of
      all-infinite distances is NaN. svseg keeps ``inf`` so that a missed organ is counted
      (``n_hd95_inf`` in the summary) rather than silently dropped by a NaN-mean;
    * otherwise the values of ``monai.metrics`` ``DiceMetric``, ``compute_hausdorff_distance(
      percentile=95, spacing=...)`` and ``compute_average_surface_distance(symmetric=True,
      spacing=...)``.
    """
    p, r = _as_bool(pred), _as_bool(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    if not r.any():
        return {"dice": float("nan"), "hd95": float("nan"), "assd": float("nan")}
    if not p.any():
        return {"dice": 0.0, "hd95": float("inf"), "assd": float("inf")}
    p, r = _cropped(p, r)
    d_pr, d_rp = surface_distances(p, r, spacing, crop=False)
    return {
        "dice": dice(p, r),
        "hd95": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "assd": float(np.concatenate((d_pr, d_rp)).mean()),
    }
