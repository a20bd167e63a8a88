"""``python -m svseg.evaluation``: evaluate a folder of predictions (NIfTI or 2D PNG/BMP/TIFF) against references."""
from __future__ import annotations

import argparse
import json
import sys

from svseg.evaluation.evaluator import evaluate_folders
from svseg.evaluation.protocols import EVALUATION_PROTOCOLS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run :func:`svseg.evaluation.evaluate_folders`, print the overall summary."""
    parser = argparse.ArgumentParser(prog="python -m svseg.evaluation", description=__doc__)
    parser.add_argument("--pred", required=True, help="folder of predicted label maps (NIfTI, or 2D PNG/BMP/TIFF)")
    parser.add_argument("--ref", required=True, help="folder of reference label maps (matched by name)")
    parser.add_argument("--output", required=True, help="folder for metrics.csv, summary.json, boxplot.png")
    parser.add_argument("--protocol", default="standard", choices=EVALUATION_PROTOCOLS,
                        help="standard, transunet, or a paper's protocol: svanet, uctransnet, awesome_unet, msga, afma")
    parser.add_argument("--classes", nargs="+", default=None, help="class names by label id, background first")
    parser.add_argument("--spacing", nargs="+", type=float, default=None,
                        help="pixel size (row, column) of 2D files, which carry none (default: HD95 in pixels)")
    parser.add_argument("--small-objects", action="store_true", help="also per-object / size-bin metrics")
    parser.add_argument("--size-reference", default="slice", choices=("slice", "volume"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    summary = evaluate_folders(
        args.pred, args.ref, args.output, protocol=args.protocol, class_names=args.classes, spacing=args.spacing,
        small_objects=args.small_objects, size_reference=args.size_reference, plot=not args.no_plot,
    )
    json.dump({"protocol": summary["protocol"], "overall": summary["overall"]}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
