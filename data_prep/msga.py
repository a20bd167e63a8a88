"""Prepare MSGA's CHAOS MRI slices (train|val|test/{Img,GT}/Subj_<X>slice_<Y>.png) for svseg.

Usage::

    python -m data_prep.msga DataSet [--output DIR] [--spacing X Y Z] [--overwrite]

Each subject's slices are re-stacked by Y into one NIfTI volume (GT level / 63 = class id); train + val ->
imagesTr with MSGA's split, test -> imagesTs. See svseg.data.convert.msga.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--spacing", nargs=3, type=float, default=None, metavar=("X", "Y", "Z"), help="voxel size in mm (default 1 1 1)")


def _opts(args):
    return {"spacing": args.spacing}


def main(argv=None) -> int:
    return run("msga", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
