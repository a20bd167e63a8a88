"""svseg against the authors' code, side by side in one process: eval forward and a train step, as ratios.

For each network the authors' model is built from a local checkout (``$SVSEG_AUTHORS_DIR/<repo>``, the layout
of ``tests/fidelity/``) by the same builders the fidelity tests use, so the two timed models are the ones
proven equal there; where the weights fit (the configurations of the fidelity tests) they are copied across
with ``svseg.networks.load_authors_weights``. Then, interleaved (svseg, authors, svseg, authors, ...), with the
same thread count, inputs and precision (fp32):

* **eval**: one forward at batch 1 under ``torch.no_grad()`` in eval mode;
* **train**: forward in train mode, the paper loss, backward and an optimiser step (SGD, momentum 0.9) at
  batch 2. The loss is svseg's implementation of the paper's loss (``svseg.losses``, checked equal to the
  authors' own in ``docs/networks.md``) applied to each side's outputs, so both sides pay the same loss cost
  and the ratio measures the networks.

The median of ``--repeats`` runs after one warm-up each is reported; the ratio is the authors' time over
svseg's (above 1: svseg is faster). ``--write docs/benchmarks.md`` replaces the section between
``<!-- versus-authors:begin -->`` and ``<!-- versus-authors:end -->``, stamped with the machine, the date and
the load average before and after.

Usage (from the repository root)::

    SVSEG_AUTHORS_DIR=~/authors python benchmarks/versus_authors.py --threads 2 --repeats 3 --write docs/benchmarks.md
    python benchmarks/versus_authors.py --networks SA2Net MSGA --device cuda
    python benchmarks/versus_authors.py --compile --skip-train --write docs/benchmarks.md   # svseg compiled

With ``--fast`` or ``--compile`` the table goes to its own section (``versus-authors-fast``), so the fp32 table
stays the reference.

Needs the authors' runtime imports where their forward uses them (``einops`` for MSA-2Net).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# this folder holds networks.py, a name the authors' repositories use for their own package: keep it off the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("benchmarks_common", HERE / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
cpu_summary = common.cpu_summary
from svseg.io import atomic_write  # noqa: E402
from svseg.losses import AFMALoss, BoundaryDoULoss, DeepSupervisionDiceBCELoss, LabelCrossEntropyLoss, MSGALoss  # noqa: E402
from svseg.networks import AFMA, MSGA, SA2Net, fast_mode, load_authors_weights  # noqa: E402
from tests.fidelity import test_afma_authors, test_msa2net_authors, test_msga_authors  # noqa: E402
from tests.fidelity import test_sa2net_authors, test_svanet_authors  # noqa: E402

BEGIN, END = "<!-- versus-authors:begin -->", "<!-- versus-authors:end -->"
PBEGIN, PEND = "<!-- versus-authors-profile:begin -->", "<!-- versus-authors-profile:end -->"
# svseg's opt-in modes (--fast, --compile) go to sections of their own (versus-authors-fast, and
# versus-authors-freeze for --compile freeze); the fp32 table stays the reference


def svanet_pair(mp):
    """SvANet at 512 (the paper's crop), 2 classes (ISIC 2018)."""
    ours, theirs = test_svanet_authors.build_pair(mp, size=512, classes=2)
    return ours, theirs, 3, 512, 2, LabelCrossEntropyLoss()


def msa2net_pair(mp):
    """MSA2Net at 224, 9 classes (Synapse)."""
    ours, theirs = test_msa2net_authors.build_pair(mp)
    return ours, theirs, 1, 224, 9, BoundaryDoULoss(9)


def afma_pair(mp):
    """AFMA U-Net / ResNet-50 at 512, att_depth 2, 12 classes (the one class count where both build the same
    model; the paper's LiTS has 3, where the authors still build 12 attention channels)."""
    module = test_afma_authors.import_authors(mp)
    theirs = test_afma_authors.build_theirs(module, 12)
    ours = AFMA(2, 3, 12, "unet", "resnet50", att_depth=test_afma_authors.ATT_DEPTH, pretrained=False)
    load_authors_weights(ours, theirs.state_dict())
    return ours, theirs, 3, 512, 12, AFMALoss(att_depth=test_afma_authors.ATT_DEPTH)


def sa2net_pair(mp):
    """SA2-Net at 224, 2 classes (with one class the authors apply a sigmoid inside the model)."""
    theirs = test_sa2net_authors.import_authors(mp).MyNet(n_channels=3, base_channel=64, n_classes=2)
    ours = SA2Net(2, 3, 2)
    load_authors_weights(ours, theirs.state_dict())
    return ours, theirs, 3, 224, 2, DeepSupervisionDiceBCELoss()


def msga_pair(mp):
    """MSGA (ResNeXt-101 backbone) at 256, 5 classes (CHAOS)."""
    theirs = test_msga_authors.import_authors(mp).DAF_stack()
    ours = MSGA(2, 1, 5, pretrained=False, init_weights=False)
    load_authors_weights(ours, theirs.state_dict())
    return ours, theirs, 1, 256, 5, MSGALoss()


PAIRS: dict[str, Callable] = {"SvANet": svanet_pair, "MSA2Net": msa2net_pair, "AFMA": afma_pair,
                              "SA2Net": sa2net_pair, "MSGA": msga_pair}


def like(theirs: Any, ours: Any) -> Any:
    """The authors' outputs in svseg's structure (same order; flat vectors reshaped), for svseg's loss."""
    if isinstance(ours, torch.Tensor):
        return theirs[0] if isinstance(theirs, (tuple, list)) else theirs
    if len(theirs) != len(ours):
        raise ValueError(f"the authors' model returns {len(theirs)} outputs, svseg's {len(ours)}")
    return type(ours)(t.reshape(o.shape) for t, o in zip(theirs, ours))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def forget_authors_modules(before: set[str]) -> None:
    """Drop the modules the last pair imported from a checkout (or stubbed): the repositories reuse top-level
    names (``networks``, ``models``, ``nets``, ``utils``), as the fidelity tests' ``isolated_imports`` does."""
    root = os.path.abspath(os.environ.get("SVSEG_AUTHORS_DIR", "/nonexistent"))
    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None)
        if path is None or os.path.abspath(path).startswith(root):
            del sys.modules[name]


def measure(name: str, repeats: int, device: torch.device, skip_train: bool, fast: bool = False,
            channels_last: bool = False, profile_top: int = 0, compile: bool | str = False) -> dict:
    mp = pytest.MonkeyPatch()
    before = set(sys.modules)
    try:
        ours, theirs, channels, size, classes, loss = PAIRS[name](mp)
        ours, theirs = ours.to(device), theirs.to(device)
        if fast or compile:  # svseg's opt-in fast mode; the authors' code runs as they ship it (fp32, eager)
            fast_mode(ours, enabled=fast, channels_last=channels_last, compile=compile)
        elif channels_last:  # fp32 on both sides, svseg's module and inputs in the channels-last layout
            ours.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(0)
        x1 = torch.randn(1, channels, size, size, generator=gen).to(device)
        x2 = torch.randn(2, channels, size, size, generator=gen).to(device)
        y2 = torch.randint(0, classes, (2, 1, size, size), generator=gen).to(device)
        times: dict[str, list[float]] = {"ours_eval": [], "theirs_eval": [], "ours_train": [], "theirs_train": []}

        layout = torch.channels_last if channels_last and not (fast or compile) else torch.contiguous_format
        x1_ours, x2_ours = x1.contiguous(memory_format=layout), x2.contiguous(memory_format=layout)

        def evaluate(net):
            net.eval()
            with torch.no_grad():
                net(x1_ours if net is ours else x1)

        template: dict[str, Any] = {}
        optimisers = {id(n): torch.optim.SGD(n.parameters(), lr=1e-4, momentum=0.9) for n in (ours, theirs)}

        def train(net, is_ours: bool):
            net.train()
            opt = optimisers[id(net)]
            opt.zero_grad(set_to_none=True)
            out = net(x2_ours if is_ours else x2)
            if is_ours:
                template["out"] = out
            value = loss(out if is_ours else like(out, template["out"]), y2)
            value.backward()
            opt.step()

        for i in range(repeats + 1):  # run 0 warms up both
            for side, net in (("ours", ours), ("theirs", theirs)):
                t = timed(lambda: evaluate(net), device)
                if i:
                    times[f"{side}_eval"].append(t)
            if skip_train:
                continue
            for side, net in (("ours", ours), ("theirs", theirs)):
                t = timed(lambda: train(net, side == "ours"), device)
                if i:
                    times[f"{side}_train"].append(t)
        med = {k: statistics.median(v) if v else None for k, v in times.items()}
        result = {"network": name, "size": size, "classes": classes, **med, "runs": times}
        if profile_top:
            result["profile"] = {"train": top_operators(lambda: train(ours, True), profile_top),
                                 "eval": top_operators(lambda: evaluate(ours), profile_top)}
        return result
    except pytest.skip.Exception as e:
        return {"network": name, "skipped": str(e)}
    finally:
        mp.undo()
        forget_authors_modules(before)


def top_operators(step: Callable[[], Any], top: int) -> list[dict]:
    """One profiled ``step`` (torch.profiler, CPU): the ``top`` operators by self time, with their share of the
    step's total self time; where 1.5x is out of reach this says what the time is spent on."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def profile_table(results: list[dict]) -> str:
    lines = [PBEGIN, "", "| network | step | top operators by self time (share of the step) |", "|---|---|---|"]
    for r in results:
        for step in ("train", "eval"):
            rows = r.get("profile", {}).get(step)
            if rows:
                ops = "; ".join(f"`{o['op']}` {100 * o['share']:.0f} %" for o in rows)
                lines.append(f"| {r['network']} | {step} | {ops} |")
    return "\n".join(lines + ["", PEND])


def ratio(theirs: float | None, ours: float | None) -> str:
    return "-" if not theirs or not ours else f"{theirs / ours:.2f}"


def table(results: list[dict], stamp: str, mode: str = "fp32 on both sides", begin: str = BEGIN,
          end: str = END) -> str:
    lines = [begin, "", stamp, "",
             "| network | input | eval: authors / svseg (s) | eval ratio | train step: authors / svseg (s) | train ratio |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['network']} | - | skipped: {r['skipped']} | | | |")
            continue
        train = (f"{r['theirs_train']:.3f} / {r['ours_train']:.3f}" if r["ours_train"] else "-")
        lines.append(f"| {r['network']} | {r['size']}², {r['classes']} classes | {r['theirs_eval']:.3f} / "
                     f"{r['ours_eval']:.3f} | {ratio(r['theirs_eval'], r['ours_eval'])} | {train} | "
                     f"{ratio(r['theirs_train'], r['ours_train'])} |")
    lines += ["", "Ratio = the authors' time / svseg's (above 1: svseg is faster). Same process, interleaved, same "
              f"inputs; precision: {mode}; eval at batch 1, train step (forward, paper loss, backward, SGD step) at batch 2; "
              "median of the runs after one warm-up (with --compile the warm-up compiles).", "", end]
    return "\n".join(lines)


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END,
                  heading: str = "svseg against the authors' code, side by side") -> None:
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    with atomic_write(path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (both sides)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--skip-train", action="store_true", help="eval forward only")
    parser.add_argument("--fast", action="store_true",
                        help="svseg in its opt-in fast mode (svseg.networks.fast_mode: bf16 autocast); the authors "
                             "stay fp32")
    parser.add_argument("--compile", nargs="?", const="true", default=None, choices=("true", "freeze"),
                        help="svseg's forward under torch.compile (svseg.networks.fast_mode(compile=...); fp32 unless "
                             "--fast); the authors' code stays eager. The warm-up run compiles; --skip-train spares the "
                             "training graphs' compilation (minutes per network on 2 cores). 'freeze' folds the "
                             "weights into the eval graph (inference only: needs --skip-train)")
    parser.add_argument("--channels-last", action="store_true",
                        help="svseg's module and inputs in the channels_last memory format (at fp32, or with --fast)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one svseg train step and one eval forward: the N top operators by self "
                             "time and their share (written to the versus-authors-profile section with --write)")
    parser.add_argument("--write", default=None, help="Markdown file whose versus-authors section to replace")
    args = parser.parse_args(argv)
    if args.compile == "freeze" and not args.skip_train:
        parser.error("--compile freeze is for inference: add --skip-train")
    compile_mode = {"true": True, "freeze": "freeze", None: False}[args.compile]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    results = []
    for name in args.networks:
        r = measure(name, args.repeats, device, args.skip_train, args.fast, args.channels_last, args.profile,
                    compile_mode)
        results.append(r)
        print({k: v for k, v in r.items() if k not in ("runs", "profile")}, flush=True)
    load_after = os.getloadavg()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    stamp = (f"Measured {dt.date.today().isoformat()} on {cpu_summary()}{', ' + gpu if gpu else ''}, torch "
             f"{torch.__version__}, {args.threads} threads, device {device}, {args.repeats} timed runs per side; "
             f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after.")
    if args.fast or args.compile:
        parts = ["bf16 autocast" if args.fast else "fp32"]
        if args.compile:
            parts.append("torch.compile" + (" with freezing" if args.compile == "freeze" else ""))
        if args.channels_last:
            parts.append("channels_last")
        mode = f"svseg in fast mode ({', '.join(parts)}), the authors' code fp32 and eager"
    else:
        mode = "fp32 on both sides" + (" (svseg in channels_last)" if args.channels_last else "")
    # one section per mode: the fp32 table stays the reference, freezing's does not overwrite plain compile's
    key, heading = "versus-authors", "svseg against the authors' code, side by side"
    if args.fast or args.compile:
        key, heading = "versus-authors-fast", "svseg's opt-in fast mode against the authors' code"
        if args.compile == "freeze":
            key, heading = "versus-authors-freeze", heading + ", with freezing"
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    section = table(results, stamp, mode, begin, end)
    print(section)
    if args.profile:
        profiles = profile_table(results)
        print(profiles)
    if args.write:
        write_section(Path(args.write), section, begin, end, heading)
        if args.profile:
            write_section(Path(args.write), profiles, PBEGIN, PEND, "Where svseg's time goes (torch.profiler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
