"""Prepare a data set in SvANet's published layout (dataset/<Set>/{train,val|test,mask}) for svseg.

Usage::

    python -m data_prep.svanet dataset/FIVES [--output DIR] [--subset FIVES] [--seed 999] [--overwrite]

Writes the nnU-Net v2 raw layout: train/ -> imagesTr, val/ or test/ -> imagesTs, and 3 seeded train/validation
repeats in splits_final.json. See svseg.data.convert.svanet and docs/datasets.md.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--subset", default=None, help="SvANet set name when the folder is not named after it")
    parser.add_argument("--seed", type=int, default=999, help="seed of the repeats (default 999, SvANet's)")
    parser.add_argument("--repeats", type=int, default=3, help="number of seeded train/validation repeats (default 3)")


def _opts(args):
    return {"subset": args.subset, "seed": args.seed, "repeats": args.repeats}


def main(argv=None) -> int:
    return run("svanet", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
