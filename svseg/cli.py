"""The ``svseg`` command: thin entry points over the Python API (nnU-Net style).

Subcommands (``svseg <command> --help`` explains every option)::

    svseg demo      [--output DIR] [--tiny] [--device cpu]          train + evaluate on the demo data
    svseg prepare   DATASET --source DIR --output DIR               convert a downloaded data set
    svseg plan      FOLDER [--labels NAME ...]                      check and plan your own data set folder
    svseg train     --bundle NAME|all [--fold K|all] [--resume auto] [--tracking mlflow] [--override KEY=VALUE ...]
    svseg predict   --bundle NAME [...] --input FILE|DIR --output DIR [--checkpoint FILE|RUN ...] [--save-probabilities]
    svseg ensemble  --input DIR DIR ... --output DIR                average saved probabilities
    svseg find-best FOLDER --runs DIR                               best network / ensemble / post-processing
    svseg predict   --model NAME.zip --input FILE|DIR --output DIR      with a model from svseg export
    svseg export    --run DIR --output NAME.zip [--format torchscript|onnx]  share a trained model
    svseg evaluate  --pred DIR --ref DIR [--protocol NAME] [--dataset FOLDER] --output DIR [--images DIR]
    svseg report    OUTPUT_DIR [--images DIR]

Also runnable as ``python -m svseg.cli``. Each command calls one documented function
(:func:`svseg.bundle.run_demo`, :func:`svseg.data.prepare`,
:func:`svseg.bundle.run_bundle`, :func:`svseg.bundle.predict`, :func:`svseg.bundle.export_run`,
:func:`svseg.evaluation.evaluate_folders`,
:func:`svseg.report.report`); results go to files, logs to stdout/stderr, errors exit non-zero with
one clear line.
"""

from __future__ import annotations

import argparse
import textwrap
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svseg.errors import InputError

__all__ = ["main", "build_parser", "parse_overrides"]

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's line breaks."""


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``["max_epochs=2", "roi_size=[160,160]", "optimizer#lr=0.01"]`` -> a dict; values are JSON
    when they parse as JSON, else strings.

    Raises:
        ValueError: for an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--override expects KEY=VALUE, got {item!r}.")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ValueError(f"--override has an empty key in {item!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- commands
# Each command imports its stage when it runs (torch, MONAI, ...), so `svseg --help` answers at once;
# the import-linter contract still sees these imports (tests/test_architecture.py).
_FAST_HELP = ("opt-in fast mode: the network runs under bf16 autocast (svseg.networks.fast_mode, the bundle key "
              "fast_mode=true); weights and checkpoints stay fp32; needs native bf16 (AVX-512-BF16/AMX CPU or GPU) "
              "and refuses to run without it; its speed and accuracy cost are not yet measured (docs/benchmarks.md)")
_COMPILE_MEASURED = ("torch.compile the network's forward (the bundle key compile=true; fp32 unless --fast too): the "
                     "first forward per input shape compiles (20-110 s on 2 CPU cores; needs g++). Measured on a 2-core "
                     "AVX2 CPU: eval 1.62x faster for SA2-Net, 1.25x AFMA, 1.12x MSGA, ~1.0 for MSA2Net and SvANet, "
                     "training slower")
_COMPILE_HELP = f"{_COMPILE_MEASURED} (docs/benchmarks.md)"
_COMPILE_PREDICT_HELP = (f"{_COMPILE_MEASURED}; --compile freeze also folds the loaded weights into the graph "
                         "(inductor's freezing, inference only): eval against the authors' eager code 1.56x for SA2-Net, "
                         "1.26x AFMA, 1.15x SvANet and MSGA, 1.08x MSA2Net (docs/benchmarks.md)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from svseg.bundle import run_demo

    summary = run_demo(output_dir=args.output, data_dir=args.data_dir, tiny=args.tiny, device=args.device,
                       max_iterations=args.max_iterations, num_threads=args.num_threads, bundle=args.bundle,
                       fast=args.fast, compile=args.compile)
    out = Path(args.output)
    png = sorted((out / "overlays").glob("*.png")) if (out / "overlays").is_dir() else []
    print(f"pictures: progress {'found' if list(out.rglob('progress.png')) else 'missing'}, "
          f"{len(png)} overlay PNG(s), box plot {'found' if (out / 'boxplot.png').is_file() else 'missing'}")
    return 0 if summary is not None else 1


def _cmd_prepare(args: argparse.Namespace) -> int:
    from svseg.data import prepare

    path = prepare(args.dataset, args.source, args.output, **parse_overrides(args.option))
    print(f"prepared {args.dataset} in {path}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from svseg.data import plan_dataset

    plan = plan_dataset(args.dataset, labels=args.labels, n_folds=args.folds, seed=args.seed, force=args.force)
    root = Path(plan["dataset"]["root"])
    rule = plan["intensity"]["rule"]
    print(f"{plan['dataset']['name']} ({plan['dataset']['layout']} layout): {len(plan['cases']['training'])} training, "
          f"{len(plan['cases']['test'])} test case(s), {plan['spatial_dims']}D, {plan['in_channels']} channel(s) "
          f"{plan['channel_names']}, classes {plan['class_names']}")
    print(f"intensity rule: {rule}; slice axis: {plan['slice_axis']}; input size per bundle: "
          + ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in plan["roi_size"].items()))
    print(f"folds: {len(plan['folds'])} ({plan['split_source']})")
    print(f"plan: {root / 'plan.json'}")
    return 0


def _dataset_arg(value: str) -> str:
    """A known data set name as it is; a data set folder (or dataset.json) as an absolute path."""
    from svseg.data import is_dataset_folder

    return str(Path(value).expanduser().absolute()) if is_dataset_folder(value) else value


def _cmd_train(args: argparse.Namespace) -> int:
    from svseg.bundle import train_runs

    override = parse_overrides(args.override)
    dataset = _dataset_arg(args.dataset) if args.dataset is not None else None
    for key, value in (("dataset_name", dataset), ("data_root", args.data_root), ("output_dir", args.output),
                       ("max_epochs", args.max_epochs), ("device", args.device)):
        if value is not None:
            override[key] = str(Path(value).absolute()) if key in ("data_root", "output_dir") else value
    override["resume"] = {"auto": "auto", "true": True, "false": False}[args.resume]
    if args.fast:
        override["fast_mode"] = True
    if args.compile:
        override["compile"] = True
    tracking = None
    if args.tracking == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError as e:
            raise RuntimeError("--tracking mlflow needs mlflow: pip install 'svseg[mlflow]'.") from e
        tracking = "mlflow"
    if tracking is not None:
        override["tracking"] = tracking
    fold = int(args.fold) if str(args.fold).isdigit() else args.fold
    for out in train_runs(args.bundle, fold, ("train.json", *args.config), **override):
        print(f"trained {out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from svseg.bundle import predict_models

    if args.model is not None:  # a zip from svseg export: its own configs and weights (svseg.bundle.export)
        from svseg.bundle import open_model

        if args.checkpoint is not None:
            raise ValueError("--checkpoint and --model exclude each other: the zip holds the weights.")
        if args.bundle is not None and len(args.bundle) > 1:
            raise ValueError("--model takes at most one --bundle (the zip holds one model).")
        with open_model(args.model, bundle=args.bundle[0] if args.bundle else None) as (folder, weights):
            args.model, args.bundle, args.checkpoint = None, str(folder), str(weights)
            return _cmd_predict(args)
    if args.bundle is None:
        raise ValueError("svseg predict needs --bundle NAME (weights from --checkpoint) or --model NAME.zip.")
    dataset = _dataset_arg(args.dataset) if args.dataset is not None else None
    overrides = parse_overrides(args.override)
    if args.fast:
        overrides["fast_mode"] = True
    if args.compile:
        overrides["compile"] = "freeze" if args.compile == "freeze" else True
    written = predict_models(args.bundle, args.input, args.output, checkpoints=args.checkpoint, device=args.device,
                             dataset=dataset, overrides=overrides, skip_existing=args.skip_existing,
                             save_probabilities=args.save_probabilities, probability_dtype=args.probabilities_dtype,
                             tta=args.tta, keep_largest_classes=args.keep_largest)
    for w in written:
        print(w)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from svseg.bundle import export_run

    result = export_run(args.run, args.output, bundle=args.bundle, fmt=args.format, weights=args.weights,
                        overrides=parse_overrides(args.override), tolerance=args.tolerance)
    parity = (f"; max abs difference to the eager network {result['max_abs_difference']:.3g}"
              if "max_abs_difference" in result else "")
    print(f"exported {result['bundle']} ({result['network']}) as {result['format']}: {result['path']}{parity}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from svseg.bundle import ensemble_folders

    for w in ensemble_folders(args.input, args.output, keep_largest_classes=args.keep_largest,
                              save_probabilities=args.save_probabilities, probability_dtype=args.probabilities_dtype):
        print(w)
    return 0


def _cmd_find_best(args: argparse.Namespace) -> int:
    from svseg.bundle import find_best

    doc = find_best(_dataset_arg(args.dataset), args.runs, output_dir=args.output, folds=args.folds,
                    networks=args.networks)
    print(doc["table"])
    out = Path(args.output or args.runs)
    print(f"\nbest: {doc['best']['configuration']}; {out / 'best.json'}, {out / 'inference_instructions.txt'}")
    print(doc["best"]["predict_command"])
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from svseg.evaluation import evaluate_folders
    from svseg.report import format_summary, record_sources, write_overlays
    from svseg.runtime import progress_enabled

    classes, spacing, protocol = args.classes, None, args.protocol
    if args.dataset is not None:  # a named data set or a planned folder: its classes, protocol, 2D pixel spacing
        from svseg.data import dataset_spec

        spec = dataset_spec(_dataset_arg(args.dataset))
        classes = classes or list(spec.class_names)
        spacing = spec.spacing_2d
        protocol = protocol or spec.protocol
    args.classes, args.protocol = classes, protocol or "standard"
    summary = evaluate_folders(args.pred, args.ref, args.output, protocol=args.protocol, class_names=args.classes,
                               spacing=spacing,
                               small_objects=args.small_objects, allow_missing=args.allow_missing,
                               plot=not args.no_plot, progress=progress_enabled())
    record_sources(args.output, pred_dir=args.pred, ref_dir=args.ref, image_dir=args.images, protocol=args.protocol)
    if args.images:
        names = ["background", *summary.get("classes", {}).keys()] if args.classes is None else args.classes
        written = write_overlays(args.pred, args.ref, args.images, args.output, n_slices=args.n_slices,
                                 class_names=names)
        print(f"overlays: {len(written)} PNG in {Path(args.output) / 'overlays'}")
    print(format_summary(args.output))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from svseg.report import report

    report(args.output_dir, pred_dir=args.pred, ref_dir=args.ref, image_dir=args.images, n_slices=args.n_slices,
           overlays=not args.no_overlays)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``svseg`` argument parser (one subparser per command)."""

    parts = __doc__.split("\n\n")
    description = parts[0] + "\n\n" + textwrap.dedent(parts[2])
    epilog = textwrap.dedent("""\
        examples:
          svseg demo --output outputs/demo
          svseg prepare synapse --source ~/Downloads/Synapse --output data/synapse
          svseg train --bundle msa2net --dataset synapse --data-root data/synapse --output runs/msa2net
          svseg predict --bundle msa2net --input scan.nii.gz --output pred/ --checkpoint runs/msa2net/models/model.pt
          svseg evaluate --pred pred/ --ref data/synapse/labelsTs --protocol transunet --output eval/ --images data/synapse/imagesTs
          svseg report eval/
        """)
    parser = argparse.ArgumentParser(prog="svseg", description=description, epilog=epilog, formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level instead of INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", formatter_class=_Formatter, help="prepare the demo data, train, evaluate, draw pictures",
                       description="Prepare the demo data (MNI152 grey/white matter, offline), train the bundle with its "
                                   "demo override, evaluate in 3D and write progress.png, overlays and a box plot. "
                                   "Calls svseg.bundle.demo.run_demo.")
    p.add_argument("--output", default="outputs/demo", help="results folder (checkpoints, metrics.csv, pictures)")
    p.add_argument("--data-dir", default=None, help="demo data folder (default $SVSEG_DATA_DIR/demo, prepared if absent)")
    p.add_argument("--tiny", action="store_true", help="use the small 4 mm demo set (quick checks and tests)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or auto")
    p.add_argument("--max-iterations", type=int, default=None,
                   help="training iterations (default: the bundle's demo.json; rounded up to whole epochs)")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--bundle", default="afma",
                   help="bundle to run: afma (default: the fastest learner of the model card, 0.85 within 4 minutes on "
                        "2 cores), svanet, msa2net, sa2net or msga (each has configs/demo.json: AdamW 1e-3 with a poly "
                        "decay; 144 iterations at 224 x 224 for all but AFMA's 120 at 160 x 160)")
    p.add_argument("--fast", action="store_true", help=_FAST_HELP)
    p.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("prepare", formatter_class=_Formatter, help="convert a downloaded data set into svseg's layout",
                       description="Convert a downloaded data set (synapse, lits, acdc) into svseg's layout with a "
                                   "Decathlon-style datalist, or build the demo data; or convert a paper's published "
                                   "layout (svanet, uctransnet, awesome_unet, msga, afma) into the nnU-Net v2 raw "
                                   "layout with the paper's split and evaluation protocol. Calls svseg.data.prepare.")
    p.add_argument("dataset", help="data set name: synapse, lits, acdc or demo; or a paper's layout: svanet, "
                                   "uctransnet, awesome_unet, msga, afma")
    p.add_argument("--source", default=None, help="folder (or archive) of the downloaded release (not needed for demo)")
    p.add_argument("--output", default=None, help="destination folder (default $SVSEG_DATA_DIR/<dataset>)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword for the converter (repeatable), e.g. --option tiny=true or "
                        "--option overwrite=true; values parsed as JSON")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("plan", formatter_class=_Formatter, help="check and plan your own data set folder",
                       description="Check every case of a data set folder (nnU-Net v2 raw, Decathlon dataset.json, or "
                                   "images/ + masks/), measure it, and write <folder>/plan.json: classes, channels, "
                                   "intensity rule, 2D/3D, slice axis, input size per bundle and folds. Nothing is "
                                   "written unless every case passes; a second run reuses the plan unless the data "
                                   "changed. Calls svseg.data.plan_dataset.")
    p.add_argument("dataset", help="data set folder, or its dataset.json")
    p.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                   help="class names by id, background first (an images/ + masks/ folder without dataset.json labels)")
    p.add_argument("--folds", type=int, default=5, help="folds of the seeded split (when the data set declares none)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the split and of the intensity sampling")
    p.add_argument("--force", action="store_true", help="plan again even when plan.json is up to date")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("train", formatter_class=_Formatter, help="train a bundle (resumes automatically)",
                       description="Run a bundle's 'training' (configs/train.json plus --config files); several "
                                   "bundles and every fold (--fold all) in turn. A killed run resumes from "
                                   "<output>/checkpoint_latest.pt when the bundle wires svseg.training.CheckpointResumer "
                                   "(resume='auto' by default). Calls svseg.bundle.train_runs.")
    p.add_argument("--bundle", required=True, nargs="+", metavar="NAME",
                   help="bundle folder name under bundles/, e.g. msa2net; several, or 'all' (the five), train in turn "
                        "into <output>/<bundle>")
    p.add_argument("--dataset", default=None,
                   help="dataset_name override: synapse, lits, acdc, demo, or your data set folder (planned on first use)")
    p.add_argument("--data-root", default=None, help="data_root override: the prepared folder of a named data set")
    p.add_argument("--fold", default=None,
                   help="fold of a planned data set (0..k-1; default 0), or 'all': every fold of the plan in turn, into "
                        "<output>/fold_<k> (finished folds are skipped, an unfinished one resumes). After each run on a "
                        "planned data set its validation cases are predicted into <run>/validation/ (label maps and "
                        "<case>.npz softmax) for svseg find-best")
    p.add_argument("--output", default=None, help="output_dir override: checkpoints, logs, progress.png")
    p.add_argument("--max-epochs", type=int, default=None, help="max_epochs override")
    p.add_argument("--device", default=None, help="device override: cpu, cuda, cuda:N or auto")
    p.add_argument("--resume", default="auto", choices=("auto", "true", "false"),
                   help="auto: resume if a checkpoint exists; true: it must exist; false: start anew")
    p.add_argument("--tracking", default="tensorboard", choices=("tensorboard", "mlflow", "none"),
                   help="experiment tracking: TensorBoard event files (the bundle's own handlers) or MLflow through MONAI's "
                        "bundle tracking (MLFlowHandler on train#trainer and validate#evaluator, store "
                        "<output>/mlruns.db; pip install 'svseg[mlflow]'); none leaves the bundle's handlers as they are")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="extra config file under the bundle's configs/ merged after train.json (repeatable), e.g. demo.json")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="any config override (repeatable), e.g. batch_size=8 or 'roi_size=[160,160]'")
    p.add_argument("--fast", action="store_true", help=_FAST_HELP)
    p.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", formatter_class=_Formatter, help="segment images or DICOM series with a bundle",
                       description="Segment one image, a DICOM series folder, or a folder of images and DICOM series "
                                   "folders with a bundle's inference.json; writes <output>/<case>_seg.nii.gz label maps "
                                   "with the input's geometry (<case>_seg.png for 2D images) and <case>_statistics.json "
                                   "(volume in mm3, or area in mm2, and connected components per class). "
                                   "Several --checkpoint models (folds, bundles) are an ensemble: their softmax is "
                                   "averaged before the argmax. Calls svseg.bundle.predict_models (one model: "
                                   "svseg.bundle.predict).")
    p.add_argument("--bundle", default=None, nargs="+", metavar="NAME",
                   help="bundle folder name under bundles/, e.g. msa2net (required unless --model is given); one for "
                        "every --checkpoint, or one per --checkpoint entry (e.g. --bundle sa2net afma --checkpoint "
                        "runs/sa2net runs/afma)")
    p.add_argument("--model", default=None, metavar="NAME.zip",
                   help="a model zip written by svseg export: its baked configs and weights are used (unpacked into "
                        "a temporary folder); excludes --checkpoint")
    p.add_argument("--input", required=True,
                   help="an image file (NIfTI, NRRD, MHA, HDF5, PNG/JPEG/BMP/TIFF), a DICOM series folder (one series; "
                        "case id = folder name), or a folder of images and DICOM series folders")
    p.add_argument("--output", required=True, help="folder for the predicted label maps")
    p.add_argument("--checkpoint", default=None, nargs="+", metavar="PATH",
                   help="weights file (model.pt or checkpoint_*.pt), a run folder (its models/model.pt), or a folder of "
                        "fold_<k> runs (every fold's models/model.pt; all the plan's folds must be there); default the "
                        "bundle's ckpt_path. Several models are an ensemble: their softmax probabilities are averaged "
                        "before the argmax (they must predict the same classes)")
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, cuda:N or auto")
    p.add_argument("--dataset", default=None,
                   help="data set the weights were trained on (a name or a folder), for weights without "
                        "svseg_model.json; default the bundle's")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="any inference config override (repeatable), e.g. 'roi_size=[224,224]'")
    p.add_argument("--continue", dest="skip_existing", action="store_true",
                   help="skip the cases whose label map and statistics (and .npz with --save-probabilities) are already "
                        "in --output (an interrupted run "
                        "goes on; every output file is written atomically, so one that exists is complete); logs "
                        "how many were skipped. On a failure an existing --output folder is kept as it was")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <output>/<case>.npz: the softmax (class axis first, in the label map's array layout; "
                        "an ensemble's average) and the class names")
    p.add_argument("--probabilities-dtype", default="float16", choices=("float16", "float32"),
                   help="dtype of the saved probabilities")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="flip test-time augmentation: the logits averaged over the in-plane flips of every slice "
                        "(nnU-Net's mirroring; 4x the network time; not with the transunet inference mode)")
    p.add_argument("--keep-largest", nargs="+", default=[], metavar="CLASS",
                   help="class ids or names whose largest connected component alone is kept (after the ensemble "
                        "average), as svseg find-best chooses")
    p.add_argument("--fast", action="store_true", help=_FAST_HELP)
    p.add_argument("--compile", nargs="?", const="true", default=None, choices=("true", "freeze"), metavar="freeze",
                   help=_COMPILE_PREDICT_HELP)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("ensemble", formatter_class=_Formatter, help="average saved probabilities of several predictions",
                       description="Average the <case>.npz probabilities of several prediction folders (svseg predict "
                                   "--save-probabilities), take the argmax and write <output>/<case>_seg.nii.gz (or "
                                   ".png, the first folder's label map gives the geometry) and <case>_statistics.json; "
                                   "nnU-Net's nnUNetv2_ensemble. Calls svseg.bundle.ensemble_folders.")
    p.add_argument("--input", required=True, nargs="+", metavar="DIR", help="prediction folders with <case>.npz files")
    p.add_argument("--output", required=True, help="folder for the ensembled label maps")
    p.add_argument("--keep-largest", nargs="+", default=[], metavar="CLASS",
                   help="class ids or names whose largest connected component alone is kept")
    p.add_argument("--save-probabilities", action="store_true", help="also write the averaged <case>.npz")
    p.add_argument("--probabilities-dtype", default="float16", choices=("float16", "float32"),
                   help="dtype of the saved probabilities")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("find-best", formatter_class=_Formatter,
                       help="rank networks, ensembles and post-processing on the cross-validation predictions",
                       description="Read the validation probabilities of every fold run under --runs (svseg train "
                                   "on a planned data set keeps them in <run>/validation/), score each network, each "
                                   "ensemble of two or more networks and keep-largest-component post-processing per "
                                   "class under the data set's protocol, print the ranking, and write best.json and "
                                   "inference_instructions.txt (the predict command of the best). nnU-Net's "
                                   "nnUNetv2_find_best_configuration. Calls svseg.bundle.find_best.")
    p.add_argument("dataset", help="the planned data set folder the runs trained on")
    p.add_argument("--runs", required=True, help="folder searched for fold runs (e.g. the --output of svseg train "
                                                 "--bundle all --fold all)")
    p.add_argument("--output", default=None, help="folder for best.json and inference_instructions.txt (default --runs)")
    p.add_argument("--folds", nargs="+", type=int, default=None, metavar="K",
                   help="folds to use (default every fold of the plan; every network needs them all)")
    p.add_argument("--networks", nargs="+", default=None, metavar="NAME",
                   help="network names (folders under --runs) to consider (default all found)")
    p.set_defaults(func=_cmd_find_best)

    p = sub.add_parser("export", formatter_class=_Formatter, help="share a trained model: bundle zip, TorchScript or ONNX",
                       description="Export the output folder of 'svseg train' as a self-contained MONAI bundle zip "
                                   "(configs with the model's classes, channels, intensity rule and input size baked "
                                   "in, models/model.pt, LICENSE, docs/README.md, docs/data_license.txt; runs with "
                                   "'python -m monai.bundle run' or 'svseg predict --model'), or as a TorchScript or "
                                   "ONNX file checked against the eager network after reloading (max abs difference "
                                   "<= 1e-4, else nothing is written). Calls svseg.bundle.export_run.")
    p.add_argument("--run", required=True, help="the training output folder (holds models/model.pt and svseg_model.json)")
    p.add_argument("--output", required=True, help="file to write: NAME.zip (bundle), NAME.ts or NAME.onnx")
    p.add_argument("--bundle", default=None,
                   help="bundle the run trained, e.g. msa2net (default: the one whose network the run's svseg_model.json names)")
    p.add_argument("--format", default="bundle", choices=("bundle", "torchscript", "onnx"),
                   help="bundle: a MONAI bundle zip; torchscript: a traced .ts (as monai.bundle ckpt_export writes); "
                        "onnx: an .onnx with a dynamic batch axis (needs onnx and onnxruntime: pip install 'svseg[test]')")
    p.add_argument("--weights", default="best", choices=("best", "final"),
                   help="best: models/model.pt (best validation Dice); final: models/model_final.pt")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="inference config value to bake in (repeatable), e.g. the network knobs the run was trained "
                        "with when its svseg_model.json does not record them: network_def#features=16")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="torchscript/onnx: the largest max abs logit difference to the eager network that is accepted "
                        "(a refusal also says how far each is from a float64 run, to tell rounding from a wrong export)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("evaluate", formatter_class=_Formatter, help="per-case, per-class 3D Dice/HD95 of predictions",
                       description="Evaluate NIfTI predictions against references matched by file name; writes "
                                   "metrics.csv, summary.json, boxplot.png (and overlays/<case>.png with --images). "
                                   "Calls svseg.evaluation.evaluate_folders.")
    p.add_argument("--pred", required=True, help="folder of predicted NIfTI label maps")
    p.add_argument("--ref", required=True, help="folder of reference NIfTI label maps")
    p.add_argument("--protocol", default=None,
                   choices=("standard", "transunet", "svanet", "uctransnet", "awesome_unet", "msga", "afma"),
                   help="standard: spacing-aware HD95 in mm, NaN for empty references; transunet: medpy-identical "
                        "voxel-unit Dice/HD95 as in the published Synapse/ACDC tables; svanet, uctransnet, "
                        "awesome_unet, msga, afma: each paper's own metric code (svseg.evaluation.protocols); "
                        "default: the --dataset's protocol (a converted paper data set names its own), else standard")
    p.add_argument("--output", required=True, help="folder for metrics.csv, summary.json and the pictures")
    p.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                   help="class names by label id, background first (default: the --dataset's, else class_<id>)")
    p.add_argument("--dataset", default=None,
                   help="data set name or folder whose class names (and 2D pixel spacing) to use")
    p.add_argument("--images", default=None, help="folder of the NIfTI images, to draw one overlay PNG per case")
    p.add_argument("--n-slices", type=int, default=6, help="slices per overlay PNG (fewer when the case has fewer)")
    p.add_argument("--small-objects", action="store_true", help="also per-object / size-bin metrics (small_objects.csv)")
    p.add_argument("--allow-missing", action="store_true", help="skip references without a prediction instead of failing")
    p.add_argument("--no-plot", action="store_true", help="do not write boxplot.png")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", formatter_class=_Formatter, help="rebuild the pictures of an evaluation and print it",
                       description="Rebuild boxplot.png and overlays/<case>.png of an evaluation output folder and print "
                                   "its per-class summary. Folders recorded by 'svseg evaluate' are reused. Calls "
                                   "svseg.report.report.")
    p.add_argument("output_dir", help="evaluation output folder (holds metrics.csv)")
    p.add_argument("--pred", default=None, help="predictions folder (default: the one recorded by svseg evaluate)")
    p.add_argument("--ref", default=None, help="references folder (default: the recorded one)")
    p.add_argument("--images", default=None, help="images folder for overlays (default: the recorded one)")
    p.add_argument("--n-slices", type=int, default=6, help="slices per overlay PNG (fewer when the case has fewer)")
    p.add_argument("--no-overlays", action="store_true", help="only the box plot and the summary")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``svseg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"svseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure reaches the user as one line (tracebacks with -v)
        if args.verbose:
            raise
        print(f"svseg {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2


_WRAPPERS = ("Failed to evaluate", "Failed to instantiate", "Component to instantiate", "Engine run is terminating")


def error_line(exc: BaseException) -> str:
    """One line for a failure: the user's own file and the problem, not the machinery around it.

    MONAI's config wrappers (``Failed to evaluate ConfigExpression: ...``) and ignite's are unwrapped
    to their cause; an :class:`svseg.data.InputError` anywhere in the chain wins; an ``OSError``
    names its file and reason.
    """
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    chosen = next((e for e in chain if isinstance(e, InputError)), None)
    if chosen is not None and getattr(chosen, "errors", None):  # several cases failed: one line each
        return str(chosen)
    if chosen is None:
        chosen = next((e for e in chain if not str(e).startswith(_WRAPPERS) and str(e).strip()), chain[-1])
    if isinstance(chosen, OSError) and chosen.filename and chosen.strerror:
        return f"{Path(str(chosen.filename)).name}: {chosen.strerror.lower()}"
    text = str(chosen).strip().splitlines()
    return text[0] if text else type(chosen).__name__


if __name__ == "__main__":
    sys.exit(main())
