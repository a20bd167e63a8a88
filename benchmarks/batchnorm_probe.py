"""Why a deep network scores nothing after a few iterations: eval-mode BatchNorm statistics or the weights?

Trains a bundle on the nuclei sample (``svseg.data.nuclei``; the model card's schedule: ``train.json`` +
``demo.json``, batch 4) for ``--iterations``, then scores the same weights on the 4 test tiles twice:

* **eval**: as svseg predicts, BatchNorm with its running statistics;
* **batch statistics**: BatchNorm layers normalising with the test batch's own statistics (the 4 tiles
  together), everything else in eval mode.

When eval scores near nothing and batch statistics score well, the weights have learned and the running
statistics (momentum 0.1: after n steps ``0.9 ** n`` of the initial mean 0 / variance 1 remains) have not yet
caught up. Found by the model card for SvANet and MSGA after 12 iterations (docs/model_card.md).

Usage (from the repository root)::

    python benchmarks/batchnorm_probe.py --bundle msga --iterations 12
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import bundle_network  # noqa: E402
from svseg.bundle import run_bundle  # noqa: E402
from svseg.data import plan_dataset  # noqa: E402
from svseg.data.transforms import apply_intensity_channels  # noqa: E402
from svseg.data.nuclei import prepare_nuclei  # noqa: E402
from svseg.io import read_image_2d  # noqa: E402


def dice_both_ways(net: torch.nn.Module, images: torch.Tensor, masks: list[np.ndarray]) -> dict[str, float]:
    """Mean foreground Dice of ``net`` on ``images`` with eval-mode BatchNorm and with batch statistics."""
    out = {}
    for mode in ("eval", "batch statistics"):
        net.eval()
        if mode == "batch statistics":
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.train()
                    m.momentum = 0.0  # normalise with the batch, leave the stored statistics as they are
        with torch.no_grad():
            logits = net(images)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        pred = logits.argmax(1).numpy()
        scores = [2 * np.sum((p == 1) & (m == 1)) / max(1, np.sum(p == 1) + np.sum(m == 1)) for p, m in zip(pred, masks)]
        out[mode] = float(np.mean(scores))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="msga")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for the data and the run (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        folder = prepare_nuclei(work / "Dataset901_DSB2018Nuclei")
        plan = plan_dataset(str(folder))
        out = work / f"{args.bundle}_{args.iterations}"
        override = {"dataset_name": str(folder), "fold": "all", "output_dir": str(out), "device": "cpu",
                    "batch_size": 4, "max_epochs": 1, "train#epoch_length": args.iterations,
                    "roi_size": [args.size, args.size], "seed": 1234}
        run_bundle("training", args.bundle, ("train.json", "demo.json"), resume=False, **override)
        net = bundle_network(args.bundle, override)
        state = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state["network"] if "network" in state else state)
        cases = sorted(p.name.split(".")[0] for p in (folder / "labelsTs").glob("*.png"))
        images = []
        for case in cases:  # the data set's planned intensity rule, as svseg predict applies it
            images.append(apply_intensity_channels(read_image_2d(folder / "imagesTs" / f"{case}_0000.png"),
                                                   plan["intensity"])[0])
        batch = torch.nn.functional.interpolate(torch.from_numpy(np.stack(images))[:, None], size=(args.size,) * 2,
                                                mode="bilinear", align_corners=False)
        masks = [np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(read_image_2d(folder / "labelsTs" / f"{c}.png", mask=True)[0][None, None].astype(np.float32)),
            size=(args.size,) * 2, mode="nearest")[0, 0]) for c in cases]
        scores = dice_both_ways(net, batch, masks)
    print(f"{args.bundle}, {args.iterations} iterations: Dice eval {scores['eval']:.3f}, "
          f"batch statistics {scores['batch statistics']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
