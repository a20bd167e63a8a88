"""Benchmark the five svseg networks against the authors' own implementations.

For each network, at the paper's input size, this measures on CPU:

* parameters (``sum(p.numel())``),
* FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 (eval mode, no_grad;
  FLOPs = 2 x MACs, elementwise ops not counted; CPU fused attention is added, see
  ``_flop_counter``),
* eval forward time at batch 1 (median of 5, no_grad),
* train forward + backward time at batch 2 (median of 3, no optimiser step; the loss is the sum
  of the mean squares of every train-mode output tensor, so all heads are back-propagated),

and prints them next to the figures measured on the authors' code (the project's reference
figures: 2-core CPU, torch 2.14.1, ``torch.set_num_threads(2)``) with the ratio svseg / authors.
Timings are only comparable when taken on the same kind of machine, and are noisy on a shared
one.

Usage::

    python benchmarks/networks.py --networks MSA2Net --threads 2
    python benchmarks/networks.py --skip-train --write docs/benchmarks.md

``--write`` updates only the ``<!-- networks:begin -->`` ... ``<!-- networks:end -->`` section of
the Markdown file, row by row: rows of networks not measured in this run are kept. Networks
whose module cannot be imported yet are skipped with a message.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from common import cpu_summary
from svseg.io import atomic_write
from svseg.networks.blocks import flatten_outputs

__all__ = ["NETWORKS", "NetSpec", "measure", "update_markdown", "main"]

BEGIN = "<!-- networks:begin -->"
END = "<!-- networks:end -->"


@dataclass
class NetSpec:
    """One network configuration as the authors measured it."""

    module: str
    cls: str
    kwargs: dict
    input_chw: tuple
    config: str
    # the authors' figures (figures.md summary table): used params, FlopCounterMode GFLOPs (B=1),
    # eval s (B=1, median of 5), train fwd+bwd s (B=2, median of 3)
    authors: dict = field(default_factory=dict)
    note: str = ""


NETWORKS: dict[str, NetSpec] = {
    "SvANet": NetSpec(
        "svseg.networks.svanet",
        "SvANet",
        dict(spatial_dims=2, in_channels=3, out_channels=2),
        (3, 512, 512),
        "ResNet-50 + DeepLabv3 + feature guide v2 (shell/main.sh), 2 classes (ISIC 2018)",
        dict(params=202_434_290, gflops=732.01, eval_s=3.78, train_s=58.6),
    ),
    "MSA2Net": NetSpec(
        "svseg.networks.msa2net",
        "MSA2Net",
        dict(spatial_dims=2, in_channels=1, out_channels=9, img_size=224),
        (1, 224, 224),
        "MaxViT-S rmlp + released decoder, 9 classes (Synapse)",
        dict(params=71_013_299, gflops=28.36, eval_s=0.281, train_s=1.64),
    ),
    "AFMA": NetSpec(
        "svseg.networks.afma",
        "AFMA",
        dict(spatial_dims=2, in_channels=3, out_channels=3, decoder="unet", encoder_name="resnet50", att_depth=2),
        (3, 512, 512),
        "U-Net, ResNet-50, att_depth 2, 3 classes (LiTS)",
        dict(params=32_580_875, gflops=97.63, eval_s=0.753, train_s=4.96),
        "the authors' AFMA always builds 12 attention channels, svseg builds K = 3",
    ),
    "SA2Net": NetSpec(
        "svseg.networks.sa2net",
        "SA2Net",
        dict(spatial_dims=2, in_channels=3, out_channels=1),
        (3, 224, 224),
        "U-Net (64) + SA2 + AuA, 1 class (MoNuSeg/GlaS)",
        dict(params=19_296_596, gflops=70.20, eval_s=0.631, train_s=4.18),
    ),
    "MSGA": NetSpec(
        "svseg.networks.msga",
        "MSGA",
        dict(spatial_dims=2, in_channels=1, out_channels=5),
        (1, 256, 256),
        "ResNeXt-101 32x8d + stacked guided attention, 5 classes (CHAOS)",
        dict(params=103_556_063, gflops=216.89, eval_s=1.33, train_s=10.15),
        "authors' train time includes their composite loss",
    ),
}


# ------------------------------------------------------------------------------ measuring
def _median_time(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def _flop_counter():
    """``FlopCounterMode`` that also counts CPU fused attention.

    torch's flop registry has no entry for ``aten._scaled_dot_product_flash_attention_for_cpu``
    (what ``F.scaled_dot_product_attention`` runs on CPU, e.g. in timm's MaxViT), so those
    matmuls would be silently missed; they are counted with torch's own SDPA formula.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    custom = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:

        def _cpu_flash_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

        custom[op] = _cpu_flash_flop
    return FlopCounterMode(display=False, custom_mapping=custom)


def measure(
    name: str,
    spec: NetSpec,
    skip_train: bool = False,
    eval_repeats: int = 5,
    train_repeats: int = 3,
    warmup: int = 1,
) -> dict:
    """Build one network and measure params, FLOPs and CPU times (see the module docstring)."""
    module = importlib.import_module(spec.module)
    net_cls = getattr(module, spec.cls)
    torch.manual_seed(0)
    net = net_cls(**spec.kwargs)
    params = sum(p.numel() for p in net.parameters())
    x1 = torch.randn(1, *spec.input_chw)

    net.eval()
    with torch.no_grad():
        with _flop_counter() as counter:
            net(x1)
        flops = counter.get_total_flops()

        def eval_step() -> None:
            net(x1)

        eval_s, eval_samples = _median_time(eval_step, eval_repeats, warmup)

    train_s, train_samples = None, []
    if not skip_train:
        net.train()
        x2 = torch.randn(2, *spec.input_chw)

        def train_step() -> None:
            net.zero_grad(set_to_none=True)
            out = net(x2)
            loss = sum((t.float() ** 2).mean() for t in flatten_outputs(out) if t.is_floating_point())
            loss.backward()

        train_s, train_samples = _median_time(train_step, train_repeats, warmup)
        net.zero_grad(set_to_none=True)
    del net
    gc.collect()
    return dict(
        name=name,
        params=params,
        gflops=flops / 1e9,
        eval_s=eval_s,
        eval_samples=eval_samples,
        train_s=train_s,
        train_samples=train_samples,
    )


def machine_stamp(threads: int) -> str:
    """CPU model, core count, torch version, threads used and the load average (a busy machine)."""
    stamp = f"{cpu_summary(platform.machine())}, torch {torch.__version__}, {threads} threads"
    if hasattr(os, "getloadavg"):
        stamp += f", 1-min load average {os.getloadavg()[0]:.1f} at start"
    return stamp


# ------------------------------------------------------------------------------ reporting
def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "-"
    return f"{ours / theirs:.2f}"


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


HEADER = (
    "| Network | Config | Input (C x H x W) | Params svseg | Params authors (used) | ratio "
    "| GFLOPs svseg | GFLOPs authors | ratio | Eval B=1 s svseg | authors | ratio "
    "| Train B=2 s svseg | authors | ratio | Measured (date; machine) |"
)
SEPARATOR = "|" + "---|" * 16


def format_row(result: dict, spec: NetSpec, stamp: str, date: str, note: str = "") -> str:
    a = spec.authors
    config = spec.config + (f" ({spec.note})" if spec.note else "")
    measured = f"{date}; {stamp}" + (f"; {note}" if note else "")
    cells = [
        result["name"],
        config,
        " x ".join(str(s) for s in spec.input_chw),
        f"{result['params']:,}",
        f"{a.get('params', 0):,}",
        _ratio(result["params"], a.get("params")),
        f"{result['gflops']:.2f}",
        f"{a.get('gflops', 0):.2f}",
        _ratio(result["gflops"], a.get("gflops")),
        _fmt(result["eval_s"]),
        _fmt(a.get("eval_s")),
        _ratio(result["eval_s"], a.get("eval_s")),
        _fmt(result["train_s"], 2) if result["train_s"] is not None else "skipped",
        _fmt(a.get("train_s"), 2),
        _ratio(result["train_s"], a.get("train_s")),
        measured,
    ]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _section(rows: dict[str, str]) -> str:
    ordered = [rows[n] for n in NETWORKS if n in rows] + [r for n, r in rows.items() if n not in NETWORKS]
    lines = [
        BEGIN,
        "## Networks: svseg vs the authors' implementations",
        "",
        "Generated by `python benchmarks/networks.py --write docs/benchmarks.md` (rows are replaced per",
        "network, others kept). Params: all parameters of the default build; the authors' column is",
        "their *used* parameters. FLOPs: `torch.utils.flop_counter.FlopCounterMode` at batch 1 (2 x MACs).",
        "Eval: median of 5 no-grad forwards at batch 1; train: median of 3 forward+backward steps at",
        "batch 2 (no optimiser step). The authors' figures were measured on their own code on a 2-core CPU",
        "(torch 2.14.1, 2 threads). Ratios are svseg / authors; CPU timings on a shared machine are",
        "noisy, so compare timings only when both sides ran on the same idle machine.",
        "",
        HEADER,
        SEPARATOR,
        *ordered,
        END,
    ]
    return "\n".join(lines)


def update_markdown(path: str | os.PathLike, new_rows: dict[str, str]) -> None:
    """Replace/insert ``new_rows`` (network -> table row) in the marked section of ``path``.

    Rows of other networks already in the section are kept; text outside the markers is
    untouched. The file is written atomically.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# svseg benchmarks\n"
    rows: dict[str, str] = {}
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        for line in text[start:stop].splitlines():
            if line.startswith("| ") and not line.startswith(HEADER[:12]):
                key = line[2:].split(" | ", 1)[0].strip()
                if key and key != "Network":
                    rows[key] = line
        before, after = text[:start], text[stop:]
    else:
        before, after = text.rstrip("\n") + "\n\n", "\n"
    rows.update(new_rows)
    out = before + _section(rows) + after
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS), help="networks to measure")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2, as the authors' figures)")
    parser.add_argument("--skip-train", action="store_true", help="skip the train fwd+bwd timing (slow for SvANet)")
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each timing")
    parser.add_argument("--write", metavar="MARKDOWN", help="update the marked networks section of this file")
    parser.add_argument("--note", default="", help="free text stored with each written row (e.g. 'shared machine')")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    torch.set_num_threads(args.threads)
    stamp = machine_stamp(args.threads)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {date}; {stamp}")
    rows: dict[str, str] = {}
    for name in args.networks:
        spec = NETWORKS[name]
        try:
            importlib.import_module(spec.module)
        except ImportError as e:
            print(f"{name}: skipped, {spec.module} is not importable yet ({e})")
            continue
        print(f"{name}: measuring {spec.cls}({spec.kwargs}) on 1 x {spec.input_chw} ...", flush=True)
        try:
            res = measure(name, spec, args.skip_train, args.eval_repeats, args.train_repeats, args.warmup)
        except (ImportError, AttributeError) as e:
            print(f"{name}: skipped, {spec.module}.{spec.cls} is not available yet ({e})")
            continue
        a = spec.authors
        print(
            f"  params {res['params']:,} (authors {a['params']:,}, ratio {_ratio(res['params'], a['params'])})\n"
            f"  GFLOPs {res['gflops']:.2f} (authors {a['gflops']:.2f}, ratio {_ratio(res['gflops'], a['gflops'])})\n"
            f"  eval B=1 {res['eval_s']:.3f} s (authors {a['eval_s']:.3f}, ratio {_ratio(res['eval_s'], a['eval_s'])});"
            f" samples {[round(s, 3) for s in res['eval_samples']]}"
        )
        if res["train_s"] is not None:
            print(
                f"  train B=2 {res['train_s']:.2f} s (authors {a['train_s']:.2f}, ratio {_ratio(res['train_s'], a['train_s'])});"
                f" samples {[round(s, 2) for s in res['train_samples']]}"
            )
        rows[name] = format_row(res, spec, stamp, date, args.note)
    if args.write and rows:
        update_markdown(args.write, rows)
        print(f"updated {args.write}: {', '.join(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
