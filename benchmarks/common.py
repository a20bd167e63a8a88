"""What the benchmark scripts share: the machine stamp of their results, the ``--json`` option.

The scripts are run by hand (``python benchmarks/X.py``), so Python finds this module next to them
(``from common import cpu_summary``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from svseg.io import atomic_write

__all__ = ["cpu_summary", "machine_stamp", "benchmark_parser", "save_results", "bundle_network"]


def machine_stamp(*details: str) -> str:
    """``"<CPU model>, <N> cores, <detail>, ..."``: the machine line of a result."""
    return ", ".join([cpu_summary(), *details])


def benchmark_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the scripts' shared ``--json PATH`` option (write the results there too)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return parser


def save_results(result: Any, path: Path | None) -> None:
    """Write ``result`` as indented JSON to ``path`` (atomically), when a path was given."""
    if path is not None:
        with atomic_write(path, "w") as f:
            f.write(json.dumps(result, indent=2))


def cpu_summary(default: str = "unknown CPU") -> str:
    """``"<CPU model>, <N> cores[, <instruction set>]"``.

    The model is the first ``model name`` of ``/proc/cpuinfo``; where there is none,
    ``platform.processor()``, and where that is empty too, ``default``. The instruction set is torch's
    ``torch.backends.cpu.get_cpu_capability()`` (AVX2, AVX512, ...) where torch is already imported: two VMs
    sold as the same "AMD EPYC" differed in it, and with it in their figures (no native bf16 without AVX-512).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.lower().startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or default
    capability = ""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            capability = f", {torch.backends.cpu.get_cpu_capability()}"
        except (AttributeError, RuntimeError):
            capability = ""
    return f"{model}, {os.cpu_count()} cores{capability}"


def bundle_network(bundle: str, overrides: dict[str, Any], configs: tuple[str, ...] = ("train.json", "demo.json")):
    """The ``network_def`` the bundle builds from ``configs`` with ``overrides`` (an untrained instance), the way
    ``python -m monai.bundle run`` would; MONAI's ``ConfigParser`` has no one-call "merge these files, apply these
    overrides, build this key"."""
    from monai.bundle import ConfigParser

    from svseg.bundle import bundle_dir

    parser = ConfigParser()
    folder = bundle_dir(bundle)
    parser.read_config([str(folder / "configs" / name) for name in configs])
    for key, value in {**overrides, "bundle_root": str(folder)}.items():
        parser[key] = value
    return parser.get_parsed_content("network_def")
