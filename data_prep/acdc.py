"""Prepare the ACDC cardiac cine-MRI data set (ED and ES frames) for svseg.

Usage::

    python -m data_prep.acdc SOURCE [--output DIR] [--overwrite]

``SOURCE`` is the ACDC ``training`` folder (``patientXXX/patientXXX_frameYY.nii.gz``, ``_gt``,
``Info.cfg``). The split is the 70 / 10 / 20 patient split of the MT-UNet lists used by CASCADE
and SA2-Net. See ``docs/datasets.md``.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def main(argv=None) -> int:
    return run("acdc", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
