"""Prepare the Synapse multi-organ CT (BTCV) data set for svseg (TransUNet protocol).

Usage::

    python -m data_prep.synapse SOURCE [--output DIR] [--window -125 275] [--no-nifti] [--overwrite]

``SOURCE`` is the BTCV ``RawData/Training`` folder (``img/imgXXXX.nii.gz``,
``label/labelXXXX.nii.gz``), or an existing TransUNet folder (``train_npz/``, ``test_vol_h5/``)
that is validated as it is and gets a ``dataset.json``. See ``docs/datasets.md``.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def _add(parser):
    parser.add_argument("--window", nargs=2, type=float, default=(-125.0, 275.0), metavar=("MIN", "MAX"), help="HU window (default -125 275)")
    parser.add_argument("--no-nifti", action="store_true", help="write only the TransUNet layout")


def _opts(args):
    return {"window": tuple(args.window), "nifti": not args.no_nifti}


def main(argv=None) -> int:
    return run("synapse", __doc__.split("\n\n")[0], argv, _add, _opts)


if __name__ == "__main__":
    sys.exit(main())
