"""TorchScript and ONNX export parity of the five networks: max abs difference to the eager network.

For each bundle (svanet, msa2net, afma, sa2net, msga) the network is built exactly as the bundle's
``inference.json`` builds it for its paper's data set and input size (``network_def`` with the data set's
class count, 1 input channel, untrained weights seeded with 0), then

* traced to TorchScript (``monai.networks.utils.convert_to_torchscript``, as ``monai.bundle ckpt_export
  --use_trace True`` does) and to ONNX (``convert_to_onnx``, TorchScript-based exporter, opset 18, dynamic
  batch axis), both through :func:`svseg.bundle.export.write_exported`, the function ``svseg export`` uses;
* reloaded (``torch.jit.load``; ``onnxruntime`` on the CPU) and run on a fresh normal input with batch 2
  (not the tracing input), and compared with the eager network's logits.

``svseg export`` refuses a file whose difference exceeds 1e-4 (``svseg.bundle.export.PARITY_TOLERANCE``). For a
difference above it, the script also runs the network in float64 and prints how far the file and the eager
float32 network each are from that: float32 rounding in PyTorch itself can be the larger error.

Usage::

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/export_parity.py                 # bundle input sizes
    python benchmarks/export_parity.py --small --networks sa2net afma                   # 64x64, reduced widths
    python benchmarks/export_parity.py --json parity.json
    python benchmarks/export_parity.py --networks afma --calibrate-bn 4                 # BatchNorm statistics set first

The exported files go to a temporary folder and are removed at the end.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from common import benchmark_parser, machine_stamp, save_results
from svseg.bundle import bundle_dir
from svseg.bundle.export import PARITY_TOLERANCE, float64_errors, write_exported

BUNDLES = {"svanet": "lits", "msa2net": "synapse", "afma": "lits", "sa2net": "acdc", "msga": "synapse"}
# --small: the smallest inputs and widths the test suite uses for quick CPU runs
SMALL = {
    "svanet": {"roi_size": [64, 64], "network_def#base_width": 16},
    "msa2net": {"roi_size": [64, 64]},
    "afma": {"roi_size": [64, 64], "encoder_name": "resnet18"},
    "sa2net": {"roi_size": [64, 64], "network_def#features": 16},
    "msga": {"roi_size": [64, 64], "network_def#backbone": "resnet50", "network_def#features": 16},
}


def build(bundle: str, small: bool) -> tuple[torch.nn.Module, tuple[int, ...], str]:
    """The bundle's network for its paper's data set, its input shape ``(1, C, H, W)`` and a description."""
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.json"))
    parser["dataset_name"] = BUNDLES[bundle]
    for key, value in (SMALL[bundle] if small else {}).items():
        parser[key] = value
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = parser.get_parsed_content("network_def")
        roi = [int(v) for v in parser.get_parsed_content("roi_size")]
        shape = (1, int(parser.get_parsed_content("in_channels")), *roi)
        classes = int(parser.get_parsed_content("num_classes"))
    knobs = ", ".join(f"{k}={v}" for k, v in (SMALL[bundle] if small else {}).items() if k != "roi_size")
    return net.eval(), shape, f"{type(net).__name__} ({BUNDLES[bundle]}: {classes} classes{', ' + knobs if knobs else ''})"


def calibrate_batchnorm(net: torch.nn.Module, shape: tuple[int, ...], passes: int) -> None:
    """Set every BatchNorm's running statistics from ``passes`` train-mode forwards on normal noise (batch 2).

    Untrained weights leave BatchNorm at the identity (mean 0, variance 1), so activations grow through a deep
    ResNet (|x| ~ 500 in AFMA's ResNet-50 at 512): float32 rounding differences between kernels then reach
    1e-4 in absolute terms. Calibrated statistics normalise the activations, as trained weights do.
    """
    kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)
    norms = [m for m in net.modules() if isinstance(m, kinds)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes
    net.train()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(passes):
            net(torch.randn((2, *shape[1:]), generator=generator))
    net.eval()


def measure(bundle: str, small: bool, folder: Path, calibrate: int = 0) -> dict:
    net, shape, what = build(bundle, small)
    if calibrate:
        calibrate_batchnorm(net, shape, calibrate)
        what += f", BatchNorm calibrated ({calibrate} passes)"
    row = {"bundle": bundle, "network": what, "input": list(shape),
           "parameters": sum(p.numel() for p in net.parameters())}
    for fmt, suffix in (("torchscript", ".ts"), ("onnx", ".onnx")):
        t0 = time.perf_counter()
        path = folder / f"{bundle}{suffix}"
        try:
            row[fmt] = write_exported(net, path, fmt, shape)
            if row[fmt] > PARITY_TOLERANCE:  # which float32 result is off: the file's or PyTorch's own?
                row[f"{fmt}_vs_float64"], row["eager_vs_float64"] = float64_errors(net, path, fmt, shape)
        except Exception as e:  # noqa: BLE001 - a failed export is a result to report, not a crash
            row[fmt] = None
            row[f"{fmt}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        row[f"{fmt}_seconds"] = round(time.perf_counter() - t0, 1)
        if path.exists():
            path.unlink()
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = benchmark_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(BUNDLES), choices=list(BUNDLES), metavar="BUNDLE",
                        help=f"bundles to export (default all: {', '.join(BUNDLES)})")
    parser.add_argument("--small", action="store_true", help="64x64 inputs and reduced widths instead of the bundle sizes")
    parser.add_argument("--calibrate-bn", type=int, default=0, metavar="N",
                        help="set the BatchNorm statistics from N train-mode passes on noise first (see calibrate_batchnorm)")
    args = parser.parse_args(argv)
    rows = []
    print(f"# export parity ({machine_stamp(f'torch {torch.__version__}', f'{torch.get_num_threads()} thread(s)')}); "
          f"accepted: max abs difference <= {PARITY_TOLERANCE:g}")
    print(f"{'bundle':<8} {'input':<18} {'TorchScript':>12} {'ONNX':>12}  network")
    with tempfile.TemporaryDirectory(prefix="svseg-parity-") as tmp:
        for bundle in args.networks:
            row = measure(bundle, args.small, Path(tmp), args.calibrate_bn)
            rows.append(row)
            cells = [f"{row[f]:.2e}" if row[f] is not None else "failed" for f in ("torchscript", "onnx")]
            print(f"{bundle:<8} {'x'.join(map(str, row['input'])):<18} {cells[0]:>12} {cells[1]:>12}  {row['network']} "
                  f"[{row['torchscript_seconds']} s, {row['onnx_seconds']} s]", flush=True)
            for f in ("torchscript", "onnx"):
                if f"{f}_error" in row:
                    print(f"    {f}: {row[f'{f}_error']}")
                if f"{f}_vs_float64" in row:
                    print(f"    {f} above the tolerance; against a float64 run of the network: {f} off by "
                          f"{row[f'{f}_vs_float64']:.2e}, the eager float32 network by {row['eager_vs_float64']:.2e}")
    save_results({"machine": machine_stamp(f"torch {torch.__version__}"), "tolerance": PARITY_TOLERANCE, "rows": rows},
                 args.json)
    return rows


if __name__ == "__main__":
    result = main()
    bad = [r["bundle"] for r in result for f in ("torchscript", "onnx") if r[f] is None or r[f] > PARITY_TOLERANCE]
    raise SystemExit(1 if bad else 0)
