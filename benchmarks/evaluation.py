"""Benchmark: svseg HD95 (``transunet`` protocol) against medpy, and peak memory of one evaluation.

Synapse-size synthetic cases (512 x 512 x D, D in 85..198 like the 12 Synapse test volumes, 8
organ classes drawn as ellipsoids of organ-like sizes and positions; the prediction is a shifted,
rescaled, noisy copy of the reference plus a few false-positive blobs). Real Synapse volumes cannot
be downloaded here; the shapes, class count and object sizes follow the published data.

For every case both implementations compute the 8 per-class (Dice, HD95) pairs:

* medpy: TransUNet's ``calculate_metric_percase`` loop (``pred == i`` / ``gt == i`` on the full volume,
  ``medpy.metric.binary.dc`` and ``hd95``);
* svseg: :func:`svseg.evaluation.evaluate_case` with ``protocol="transunet"``.

Values are compared one by one (max absolute difference), times side by side per case. medpy
takes minutes per case on one core, so ``--medpy-cases`` limits how many cases it runs on (the
speed-up is the ratio of the summed times over the cases both ran).

Peak RSS: a fresh subprocess evaluates one 512 x 512 x 200 case from NIfTI files with
:func:`svseg.evaluation.evaluate_folders` (``standard`` protocol, box plot included) and reports its
``ru_maxrss``.

Usage::

    python benchmarks/evaluation.py --cases 12 --medpy-cases 12 --json results.json
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from common import benchmark_parser, machine_stamp, save_results

#: the 12 Synapse test volumes have 85 to 198 slices; these depths span that range
SYNAPSE_DEPTHS = (147, 139, 198, 140, 117, 131, 163, 148, 149, 148, 143, 89)
#: organ ellipsoids: centre and radii as fractions of (H, W, D), label ids in TransUNet order
ORGANS = {
    1: ((0.50, 0.47, 0.50), (0.025, 0.025, 0.45)),  # aorta: a long thin tube
    2: ((0.45, 0.36, 0.45), (0.035, 0.030, 0.08)),  # gallbladder
    3: ((0.55, 0.66, 0.50), (0.055, 0.045, 0.14)),  # left kidney
    4: ((0.55, 0.30, 0.50), (0.055, 0.045, 0.14)),  # right kidney
    5: ((0.42, 0.30, 0.55), (0.180, 0.140, 0.22)),  # liver
    6: ((0.50, 0.56, 0.45), (0.110, 0.030, 0.07)),  # pancreas
    7: ((0.55, 0.76, 0.60), (0.070, 0.055, 0.12)),  # spleen
    8: ((0.36, 0.64, 0.60), (0.110, 0.090, 0.14)),  # stomach
}


def synthetic_case(depth: int, seed: int, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic Synapse-like case: ``(pred, ref)`` uint8 label volumes of shape (size, size, depth)."""
    rng = np.random.default_rng(seed)
    shape = np.array([size, size, depth])
    ref = np.zeros(tuple(shape), np.uint8)
    pred = np.zeros_like(ref)
    order = sorted(ORGANS, key=lambda c: -np.prod(ORGANS[c][1]))  # large organs first, small on top
    for c in order:
        centre_f, radii_f = ORGANS[c]
        centre = np.array(centre_f) * shape + rng.normal(0, 4, 3)
        radii = np.array(radii_f) * shape * rng.uniform(0.9, 1.1, 3)
        lo = np.maximum((centre - 1.3 * radii - 3).astype(int), 0)
        hi = np.minimum((centre + 1.3 * radii + 4).astype(int), shape)
        grid = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box = tuple(slice(lo[i], hi[i]) for i in range(3))
        e_ref = sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
        ref[box][e_ref <= 1] = c
        shift = rng.normal(0, 0.06, 3) * radii
        scale = rng.uniform(0.9, 1.1, 3)
        e_pred = sum(((grid[i] - centre[i] - shift[i]) / (radii[i] * scale[i])) ** 2 for i in range(3))
        noise = ndimage.gaussian_filter(rng.normal(0, 1, e_pred.shape).astype(np.float32), 2.0) * 2.0
        pred[box][(e_pred + noise) <= 1] = c
    for _ in range(4):  # false-positive blobs
        c = int(rng.integers(1, 9))
        p = (rng.random(3) * shape).astype(int)
        r = rng.integers(2, 6)
        pred[tuple(slice(max(p[i] - r, 0), p[i] + r) for i in range(3))] = c
    return pred, ref


def medpy_transunet_case(pred: np.ndarray, ref: np.ndarray, n_classes: int = 9) -> list[tuple[float, float]]:
    """TransUNet's per-case loop with medpy (the reference implementation)."""
    from medpy.metric import binary

    out = []
    for i in range(1, n_classes):
        p = (pred == i).astype(np.uint8)
        g = (ref == i).astype(np.uint8)
        if p.sum() > 0 and g.sum() > 0:
            out.append((binary.dc(p, g), binary.hd95(p, g)))
        elif p.sum() > 0 and g.sum() == 0:
            out.append((1.0, 0.0))
        else:
            out.append((0.0, 0.0))
    return out


# VmHWM (peak resident set of this process image) rather than ru_maxrss: on Linux ru_maxrss survives
# exec and would include the parent's resident memory at fork time.
_RSS_CHILD = r"""
import sys, json
from svseg.evaluation import evaluate_folders
s = evaluate_folders(sys.argv[1], sys.argv[2], sys.argv[3], protocol="standard", progress=False)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"maxrss_kib": hwm, "dice": s["overall"]["dice"]}))
"""


def peak_rss_one_case(depth: int = 200) -> dict:
    """Peak RSS (MiB) of a fresh process evaluating one 512x512xdepth case from NIfTI files."""
    import nibabel as nib

    pred, ref = synthetic_case(depth, seed=123)
    with tempfile.TemporaryDirectory() as tmp:
        for sub, arr in (("pred", pred), ("ref", ref)):
            Path(tmp, sub).mkdir()
            nib.save(nib.Nifti1Image(arr, np.diag([0.78, 0.78, 2.5, 1.0])), str(Path(tmp, sub, "case0001.nii.gz")))
        del pred, ref
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(Path(tmp, "pred")), str(Path(tmp, "ref")), str(Path(tmp, "out"))],
            capture_output=True, text=True, env=env, check=True,
        )
        wall = time.perf_counter() - t
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return {"peak_rss_mib": info["maxrss_kib"] / 1024.0, "wall_s": wall, "shape": [512, 512, depth]}


def run(n_cases: int, medpy_cases: int) -> dict:
    from svseg.evaluation import evaluate_case

    names = ["background"] + [f"organ{i}" for i in range(1, 9)]
    rows = []
    t_ours = t_medpy = t_ours_on_medpy = 0.0
    max_diff = 0.0
    n_values = 0
    for k in range(n_cases):
        depth = SYNAPSE_DEPTHS[k % len(SYNAPSE_DEPTHS)]
        pred, ref = synthetic_case(depth, seed=k)
        t = time.perf_counter()
        ours = evaluate_case(pred, ref, names, protocol="transunet", case=f"case{k:02d}")
        dt_ours = time.perf_counter() - t
        t_ours += dt_ours
        line = {"case": k, "depth": depth, "svseg_s": dt_ours}
        if k < medpy_cases:
            t = time.perf_counter()
            theirs = medpy_transunet_case(pred, ref)
            dt_medpy = time.perf_counter() - t
            t_medpy += dt_medpy
            t_ours_on_medpy += dt_ours
            diffs = [max(abs(o["dice"] - d), abs(o["hd95"] - h)) for o, (d, h) in zip(ours, theirs)]
            max_diff = max(max_diff, max(diffs))
            n_values += 2 * len(diffs)
            line.update(medpy_s=dt_medpy, ratio=dt_medpy / dt_ours, max_abs_diff=max(diffs))
        rows.append(line)
        print(json.dumps(line), flush=True)
    return {
        "n_cases": n_cases,
        "medpy_cases": min(medpy_cases, n_cases),
        "svseg_total_s": t_ours,
        "svseg_s_per_case": t_ours / n_cases,
        "medpy_total_s": t_medpy,
        "svseg_s_on_medpy_cases": t_ours_on_medpy,
        "speedup": (t_medpy / t_ours_on_medpy) if t_ours_on_medpy else None,
        "max_abs_diff": max_diff,
        "n_values_compared": n_values,
        "per_case": rows,
    }


def main(argv=None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--medpy-cases", type=int, default=12)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--rss-only", action="store_true", help="only the peak-memory measurement")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {"machine": machine_stamp(f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}"),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes")}
    if not args.rss_only:
        result["hd95"] = run(args.cases, args.medpy_cases)
    if not args.no_rss:
        result["rss"] = peak_rss_one_case()
        print(json.dumps(result["rss"]), flush=True)
    if not args.rss_only:
        summary = {k: v for k, v in result["hd95"].items() if k != "per_case"}
        print(json.dumps(summary, indent=2))
    save_results(result, args.json)
    return result


if __name__ == "__main__":
    main()
