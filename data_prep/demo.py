"""Prepare the svseg demonstration data (MNI152 brain MRI from nilearn; no download needed).

Usage::

    python -m data_prep.demo --output DIR [--tiny] [--force]

Without ``--output`` the set goes to ``$SVSEG_DATA_DIR/demo`` (``demo_tiny`` with ``--tiny``),
``SVSEG_DATA_DIR`` defaulting to ``~/.cache/svseg``. See :mod:`svseg.data.demo` for the labels,
the intensity rule and the held-out slabs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from svseg.data.demo import prepare_demo

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="destination folder (default: $SVSEG_DATA_DIR/demo)")
    parser.add_argument("--tiny", action="store_true", help="build the small 4 mm version used by the tests")
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date set exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = prepare_demo(args.output, tiny=args.tiny, force=args.force)
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
