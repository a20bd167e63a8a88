"""Shared argument handling of the ``python -m data_prep.<dataset>`` commands."""

from __future__ import annotations

import argparse
import logging
from typing import Any, Callable, Sequence

from svseg.data import prepare

__all__ = ["run"]


def run(
    name: str,
    description: str,
    argv: Sequence[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    options: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
) -> int:
    """Parse the common arguments (source, --output, --overwrite, --cases, --quiet) and call ``svseg.data.prepare``."""
    parser = argparse.ArgumentParser(prog=f"python -m data_prep.{name}", description=description)
    parser.add_argument("source", help="folder of the downloaded release")
    parser.add_argument("--output", default=None, help=f"destination folder (default: $SVSEG_DATA_DIR/{name})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--cases", nargs="+", default=None, help="convert only these case ids")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opts: dict[str, Any] = {"overwrite": args.overwrite, "cases": args.cases, "progress": not args.quiet}
    if options is not None:
        opts.update(options(args))
    out = prepare(name, args.source, args.output, **opts)
    print(out)
    return 0
