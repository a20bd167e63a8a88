"""Prepare LiTS in AFMA's .npy slice layout (train|val|test/ with *volume*.npy and *segmentation*.npy) for svseg.

Usage::

    python -m data_prep.afma LiTS_slices [--output DIR] [--window -250 250] [--overwrite]

Images are clipped to the HU window once and written as float32 TIFFs (channel_names noNorm); train + val ->
imagesTr with AFMA's split, test -> imagesTs. See svseg.data.convert.afma_lits.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--window", nargs=2, type=float, default=(-250.0, 250.0), metavar=("MIN", "MAX"), help="HU clip (default -250 250, AFMA's)")


def _opts(args):
    return {"window": tuple(args.window)}


def main(argv=None) -> int:
    return run("afma", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
