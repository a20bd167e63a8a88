"""Prepare ISIC 2018 task 1 in Awesome-U-Net's layout for svseg.

Usage::

    python -m data_prep.awesome_unet ISIC2018 [--output DIR] [--overwrite]

The folder holds ISIC2018_Task1-2_Training_Input/*.jpg and ISIC2018_Task1_Training_GroundTruth/*_segmentation.png;
the split is Awesome-U-Net's 1815 / 259 / 520 (sorted ids). SegPC 2021 is not converted. See
svseg.data.convert.awesome_unet.
"""

from __future__ import annotations

import sys

from data_prep.cli import run

__all__ = ["main"]


def main(argv=None) -> int:
    return run("awesome_unet", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
