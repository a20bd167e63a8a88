"""Prepare the LiTS liver/tumour CT data set for svseg.

Usage::

    python -m data_prep.lits SOURCE [--output DIR] [--window -250 250] [--fold K --n-folds 5] [--slices] [--overwrite]

``SOURCE`` holds ``volume-N.nii`` and ``segmentation-N.nii`` (N = 0..130, searched recursively).
The split is svseg's fixed one (volumes 0-103 training, 104-117 validation, 118-130 test) or, with
``--fold``, a k-fold split of the 118 non-test volumes. See ``docs/datasets.md``.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--window", nargs=2, type=float, default=(-250.0, 250.0), metavar=("MIN", "MAX"), help="HU window (default -250 250, as AFMA)")
    parser.add_argument("--fold", type=int, default=None, help="use fold K of a k-fold split instead of the fixed validation split")
    parser.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--slices", action="store_true", help="also write a 2D npz slice cache and H5 test volumes")


def _opts(args):
    return {"window": tuple(args.window), "fold": args.fold, "n_folds": args.n_folds, "slices": args.slices}


def main(argv=None) -> int:
    return run("lits", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
