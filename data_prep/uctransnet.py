"""Prepare MoNuSeg or GlaS in the UCTransNet / SA2-Net layout ({Train,Val,Test}_Folder/{img,labelcol}) for svseg.

Usage::

    python -m data_prep.uctransnet datasets/MoNuSeg [--output DIR] [--split kfold|folders] [--binarize] [--overwrite]

Writes the nnU-Net v2 raw layout with SA2-Net's 5-fold split (KFold shuffle, seed 999) of Train_Folder, or
UCTransNet's Train/Val folders; Test_Folder -> imagesTs. See svseg.data.convert.uctransnet.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--split", choices=("kfold", "folders"), default="kfold", help="SA2-Net's 5 folds or UCTransNet's Val_Folder")
    parser.add_argument("--seed", type=int, default=999, help="KFold seed (default 999, SA2-Net's)")
    parser.add_argument("--binarize", action="store_true", help="set every mask value > 0 to 1 (the authors' loader)")


def _opts(args):
    return {"split": args.split, "seed": args.seed, "binarize": args.binarize}


def main(argv=None) -> int:
    return run("uctransnet", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
