"""The model card: all five networks trained side by side on two real data sets, under one short schedule.

Each network is trained by its own bundle (``bundles/<net>/configs/train.json`` + ``demo.json``: the paper's
network, loss and input pipeline, with the demo's short-schedule override: AdamW lr 1e-3, poly decay, no
augmentation, no validation during training) for the same number of iterations at the same batch size and
input size, then scored on held-out data:

1. **MNI152** (``svseg demo`` data): background / grey matter / white matter of the nilearn MNI152 2009a
   template; training on the axial slices outside the held-out slabs, scored in 3D (Dice, HD95 in mm) on the
   two 16-slice test slabs, per class.
2. **DSB2018 nuclei** (the ``stardist`` wheel's sample, :func:`svseg.data.nuclei.prepare_nuclei`): 16 tiles of
   128 x 128, 12 for training and the 4 diagonal ones for the test, no overlap; Dice, HD95 (pixels) per tile
   and the small-object metrics (detection recall per SvANet size bin).

It writes ``<work>/results.json`` and, with ``--write``, ``docs/model_card.md`` (the whole file) with one row
per network and data set (Dice, HD95, recall per size bin for the nuclei, train wall time, iterations,
parameters), the best constant predictor of each test set as a floor, the machine, the date and the load
average, and one picture per data set: the five networks' predictions side by side on the same test slice
or tile (``docs/images/model_card_<dataset>.png``).

Usage (from the repository root; run it alone, on an idle machine: two torch jobs on 2 cores slow each other
5-10x)::

    python benchmarks/model_card.py --threads 2 --write docs/model_card.md     # about 40 min on 2 cores
    python benchmarks/model_card.py --networks afma sa2net --datasets nuclei --iterations 10   # a quick look
    python benchmarks/model_card.py --render-only --write docs/model_card.md   # re-render from results.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from common import bundle_network, cpu_summary  # noqa: E402
from svseg.io import atomic_save_figure, atomic_save_json, atomic_write, read_image_2d  # noqa: E402

NETWORKS = ("svanet", "msa2net", "afma", "sa2net", "msga")
TITLES = {"svanet": "SvANet", "msa2net": "MSA2Net", "afma": "AFMA", "sa2net": "SA2-Net", "msga": "MSGA"}
DATASETS = ("mni152", "nuclei")
DATASET_TITLES = {"mni152": "MNI152 GM/WM (3D)", "nuclei": "DSB2018 nuclei (2D tiles)"}


def schedule(iterations: int, batch_size: int, size: int, per_epoch: int) -> dict[str, Any]:
    """The card's overrides on top of ``train.json`` + ``demo.json``: ``iterations`` at ``batch_size``, ``size``².

    ``per_epoch`` is the epoch length used to split the iterations (the poly decay runs per iteration, so
    only the checkpoint cadence depends on it).
    """
    epoch_length = max(1, min(per_epoch, iterations))
    if iterations % epoch_length:
        raise ValueError(f"iterations {iterations} must be a multiple of the epoch length {epoch_length}")
    return {"batch_size": batch_size, "max_epochs": iterations // epoch_length, "train#epoch_length": epoch_length,
            "roi_size": [size, size], "seed": 1234}


def dataset_overrides(name: str, data_dir: Path) -> dict[str, Any]:
    """``dataset_name`` (+ ``data_root``, ``fold``) of a card data set, prepared under ``data_dir`` if needed."""
    if name == "mni152":
        from svseg.data import prepare_demo

        return {"dataset_name": "demo", "data_root": str(prepare_demo(data_dir / "demo"))}
    if name == "nuclei":
        from svseg.data import plan_dataset
        from svseg.data.nuclei import NUCLEI_DATASET, prepare_nuclei

        folder = prepare_nuclei(data_dir / NUCLEI_DATASET)
        plan_dataset(str(folder))
        return {"dataset_name": str(folder), "fold": "all"}
    raise ValueError(f"unknown card data set {name!r}; choose from {DATASETS}")


def count_parameters(bundle: str, overrides: dict[str, Any]) -> int:
    """Parameters of the network the bundle builds with these overrides (all of them; every one is trained)."""
    net = bundle_network(bundle, overrides)
    return int(sum(p.numel() for p in net.parameters()))


def train_and_score(bundle: str, dataset: str, work: Path, iterations: int, batch_size: int, size: int,
                    data_dir: Path) -> dict[str, Any]:
    """Train ``bundle`` on ``dataset`` under the card's schedule, evaluate on its test data, return the row."""
    from svseg.bundle import run_bundle

    out = work / dataset / bundle
    ds = dataset_overrides(dataset, data_dir)
    override = {**ds, **schedule(iterations, batch_size, size, per_epoch=40), "output_dir": str(out), "device": "cpu"}
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    run_bundle("training", bundle, ("train.json", "demo.json"), resume=False, **override)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run_bundle("evaluating", bundle, ("train.json", "demo.json", "evaluate.json"), save_predictions=True, **override)
    eval_s = time.perf_counter() - t1
    row: dict[str, Any] = {"network": bundle, "dataset": dataset, "iterations": iterations, "batch_size": batch_size,
                           "input": size, "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
                           "parameters": count_parameters(bundle, override), "output_dir": str(out)}
    metrics = pd.read_csv(out / "metrics.csv")
    row["per_class"] = {str(c): {"dice": float(g["dice"].mean()), "hd95": _finite_mean(g["hd95"])}
                        for c, g in metrics.groupby("class", sort=False)}
    row["dice"] = float(np.mean([v["dice"] for v in row["per_class"].values()]))
    hd = [v["hd95"] for v in row["per_class"].values() if v["hd95"] is not None]
    row["hd95"] = float(np.mean(hd)) if hd else None
    if dataset == "nuclei":
        row["small_objects"] = nuclei_objects(out, Path(ds["dataset_name"]))
    return row


def _finite_mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce")
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def nuclei_objects(run: Path, folder: Path) -> dict[str, Any]:
    """Detection recall per SvANet size bin of the nuclei test tiles (``svseg evaluate --small-objects``)."""
    from svseg.evaluation import evaluate_folders

    summary = evaluate_folders(run / "predictions", folder / "labelsTs", run / "eval_small_objects",
                               class_names=["background", "nucleus"], small_objects=True, plot=False, progress=False)
    so = summary["small_objects"]
    bins = {k: {"n": v["n_objects"], "recall": v["recall"]} for k, v in so["bins"].items() if v["n_objects"]}
    return {"bins": bins, "all": {"n": so["all"]["n_objects"], "recall": so["all"]["recall"]},
            "false_positives": so["all"]["n_false_positive"]}


def constant_floor(dataset: str, data_dir: Path) -> dict[str, Any]:
    """The best constant predictor on the test data: the class whose all-voxel map gives the highest mean Dice
    over the foreground classes (a network that learned nothing can reach this by predicting one class)."""
    refs = _test_references(dataset, data_dir)
    n_classes = int(max(r.max() for r in refs)) + 1
    best = None
    for c in range(n_classes):
        dice = []
        for k in range(1, n_classes):
            per_case = []
            for r in refs:
                ref = r == k
                pred = np.full(r.shape, c == k)
                denom = ref.sum() + pred.sum()
                per_case.append(2.0 * np.logical_and(ref, pred).sum() / denom if denom else 1.0)
            dice.append(float(np.mean(per_case)))
        score = float(np.mean(dice))
        if best is None or score > best["dice"]:
            best = {"dice": score, "constant_class": c}
    return best


def _test_references(dataset: str, data_dir: Path) -> list[np.ndarray]:
    import nibabel as nib

    ds = dataset_overrides(dataset, data_dir)
    if dataset == "mni152":
        root = Path(ds["data_root"])
        doc = json.loads((root / "dataset.json").read_text())
        return [np.asarray(nib.load(str(root / item["label"])).dataobj) for item in doc["test"]]
    folder = Path(ds["dataset_name"])
    return [read_image_2d(f, mask=True)[0] for f in sorted((folder / "labelsTs").glob("*.png"))]


# ----------------------------------------------------------------------------- pictures
def picture(dataset: str, rows: list[dict[str, Any]], data_dir: Path, path: Path) -> Path:
    """Image, reference and the five predictions on one test slice (MNI152) or tile (nuclei), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    from matplotlib.colors import ListedColormap

    ds = dataset_overrides(dataset, data_dir)
    if dataset == "mni152":
        root = Path(ds["data_root"])
        case = json.loads((root / "dataset.json").read_text())["test"][0]
        image = np.asarray(nib.load(str(root / case["image"])).dataobj, dtype=np.float32)
        ref = np.asarray(nib.load(str(root / case["label"])).dataobj)
        z = image.shape[2] // 2
        name = Path(case["label"]).name.split(".")[0]

        def load(run: Path) -> np.ndarray:
            return np.asarray(nib.load(str(run / "predictions" / f"{name}.nii.gz")).dataobj)[:, :, z]

        image, ref = np.rot90(image[:, :, z]), np.rot90(ref[:, :, z])
        rot = True
        where = f"test slab {name}, axial slice {z}"
    else:
        folder = Path(ds["dataset_name"])
        name = "tile10"
        image = read_image_2d(folder / "imagesTs" / f"{name}_0000.png")[0]
        ref = read_image_2d(folder / "labelsTs" / f"{name}.png", mask=True)[0]

        def load(run: Path) -> np.ndarray:
            return read_image_2d(run / "predictions" / f"{name}.png", mask=True)[0]

        rot = False
        where = f"test tile {name}"
    colours = ListedColormap([(0, 0, 0, 0), (1.0, 0.55, 0.0, 0.55), (0.1, 0.6, 1.0, 0.55)])
    panels = [("reference", ref)] + [(f"{TITLES[r['network']]} (Dice {r['dice']:.3f})",
                                     np.rot90(load(Path(r["output_dir"]))) if rot else load(Path(r["output_dir"])))
                                    for r in rows]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 3.0))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image", fontsize=9)
    for ax, (title, lab) in zip(axes[1:], panels):
        ax.imshow(image, cmap="gray")
        ax.imshow(np.asarray(lab), cmap=colours, vmin=0, vmax=2, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{DATASET_TITLES[dataset]}: {where}" + (" (orange GM, blue WM)" if dataset == "mni152" else
                                                          " (orange: nucleus)"), fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the card
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def render(result: dict[str, Any], images: dict[str, str]) -> str:
    """The Markdown of ``docs/model_card.md`` from ``results.json``."""
    s = result["settings"]
    lines = [
        "# svseg model card: five networks side by side on two real data sets",
        "",
        "Generated by `python benchmarks/model_card.py " + " ".join(result["argv"]) + "` in one run; "
        "do not edit the tables by hand.",
        "",
        f"**Measured** in one run that finished {result['date']}, on {result['machine']}, torch {result['torch']}, {s['threads']} threads, "
        f"device cpu; load average (1 min) {result['load_before']:.2f} before, {result['load_after']:.2f} after "
        f"(the benchmark's own threads count in it); total {result['total_s'] / 60:.1f} min.",
        "",
        "**Schedule (the same for every network and data set).** Each network is trained by its own bundle "
        "(`bundles/<net>/configs/train.json`: the paper's network, loss and input pipeline) with the demo "
        "override `configs/demo.json`: AdamW, learning rate 1e-3, poly decay (power 0.9) per iteration, no "
        f"augmentation, no validation during training. {s['iterations']} iterations at batch {s['batch_size']}, "
        f"input {s['size']} x {s['size']} (one size at which all five fit a 2-core CPU; MSA2Net's MaxViT "
        f"partitions {s['size']} // 32 = {s['size'] // 32} instead of 7, so its relative-position tables are "
        "smaller than at the paper's 224), seed 1234, no pretrained weights (nothing can be downloaded here). "
        "The paper recipes (SGD/Adam, hundreds of epochs, paper sizes) are the bundles' defaults and need a GPU; "
        "these rows are evidence that each network, as wired in svseg, learns, not a replication of the "
        "papers' figures.",
        "",
        "## Results",
        "",
        "| data set | network | Dice (mean of classes) | per class Dice | HD95 | recall of nuclei by size (% of the tile) "
        "| train wall time | iterations x batch | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in DATASETS:
        rows = [r for r in result["rows"] if r["dataset"] == ds]
        for r in rows:
            per_class = ", ".join(f"{c} {_fmt(v['dice'])}" for c, v in r["per_class"].items())
            unit = " mm" if ds == "mni152" else " px"
            if ds == "nuclei":
                so = r["small_objects"]
                bins = "; ".join(f"{k}: {_fmt(v['recall'], 2)} (n={v['n']})" for k, v in so["bins"].items())
                recall = f"all {_fmt(so['all']['recall'], 2)} (n={so['all']['n']}); {bins}; FP {so['false_positives']}"
            else:
                recall = "-"
            lines.append(f"| {DATASET_TITLES[ds]} | {TITLES[r['network']]} | {_fmt(r['dice'])} | {per_class} | "
                         f"{_fmt(r['hd95'], 2)}{unit if r['hd95'] is not None else ''} | {recall} | {r['train_s']:.0f} s | "
                         f"{r['iterations']} x {r['batch_size']} | {r['parameters']:,} |")
        floor = result["floors"].get(ds)
        if floor:
            lines.append(f"| {DATASET_TITLES[ds]} | best constant predictor (class {floor['constant_class']} "
                         f"everywhere) | {_fmt(floor['dice'])} | | | | | | |")
    lines += [
        "",
        "Dice and HD95 are per test case and class, then averaged over the cases and over the foreground classes "
        "(MNI152: 2 slabs x {grey matter, white matter}, scored in 3D on the slab volumes, HD95 in mm; nuclei: "
        "4 tiles, HD95 in pixels). The recall of nuclei is the share of reference nuclei (connected components) "
        "that the prediction touches, per SvANet size bin of the nucleus's share of its 128 x 128 tile "
        "(`svseg evaluate --small-objects`); FP counts predicted components that touch no nucleus. Train wall time "
        "includes the bundle's start-up and checkpointing, not the evaluation.",
        "",
        "## Pictures",
        "",
    ]
    for ds in DATASETS:
        if ds in images:
            lines += [f"![{DATASET_TITLES[ds]}]({images[ds]})", ""]
    lines += ["## Findings", "", result.get("findings", "(written after looking at the run)"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--iterations", type=int, default=80, help="training iterations per network and data set")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="input size (a multiple of 32, for MSA2Net's MaxViT)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "model_card", help="runs, data, results.json")
    parser.add_argument("--write", type=Path, default=None, help="write the card here (e.g. docs/model_card.md)")
    parser.add_argument("--findings", type=Path, default=HERE / "model_card_findings.md",
                        help="a Markdown file with the findings section (default: the one written after the last run)")
    parser.add_argument("--render-only", action="store_true", help="re-render the card from <work>/results.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work.absolute()
    data_dir = work / "data"
    results_path = work / "results.json"
    if args.render_only:
        result = json.loads(results_path.read_text())
    else:
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        rows, floors = [], {}
        for ds in args.datasets:
            floors[ds] = constant_floor(ds, data_dir)
            for net in args.networks:
                print(f"[model card] {net} on {ds}: {args.iterations} iterations at batch {args.batch_size}, "
                      f"{args.size}x{args.size}", flush=True)
                row = train_and_score(net, ds, work, args.iterations, args.batch_size, args.size, data_dir)
                print(f"[model card] {net} on {ds}: Dice {row['dice']:.3f}, HD95 {row['hd95']}, "
                      f"train {row['train_s']:.0f} s", flush=True)
                rows.append(row)
                atomic_save_json({"rows": rows}, work / "partial.json")
        result = {"rows": rows, "floors": floors, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "machine": cpu_summary(), "torch": torch.__version__, "load_before": load_before,
                  "load_after": os.getloadavg()[0], "total_s": time.perf_counter() - t0,
                  "argv": sys.argv[1:] if argv is None else list(argv),
                  "settings": {"iterations": args.iterations, "batch_size": args.batch_size, "size": args.size,
                               "threads": args.threads}}
        atomic_save_json(result, results_path)
    if args.findings is not None:
        result["findings"] = args.findings.read_text().strip()
    images = {}
    if args.write is not None:
        img_dir = args.write.parent / "images"
        for ds in DATASETS:
            rows = [r for r in result["rows"] if r["dataset"] == ds]
            if rows:
                picture(ds, rows, data_dir, img_dir / f"model_card_{ds}.png")
                images[ds] = os.path.relpath(img_dir / f"model_card_{ds}.png", args.write.parent)
        with atomic_write(args.write, "w") as f:
            f.write(render(result, images))
        print(f"wrote {args.write}")
    for r in result["rows"]:
        print(f"{r['dataset']:7s} {r['network']:8s} Dice {r['dice']:.3f}  HD95 {_fmt(r['hd95'], 2):>7s}  "
              f"train {r['train_s']:6.0f} s  params {r['parameters']:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
