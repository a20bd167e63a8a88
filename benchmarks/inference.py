"""Benchmark: slice-batched volume inference against the TransUNet per-slice loop.

Network: ``monai.networks.nets.UNet(spatial_dims=2, in_channels=1, out_channels=3,
channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)`` (1.63 M parameters),
trained here for a few iterations on axial slices of the MNI152 2009a T1 template (nilearn) to
segment background / grey matter / white matter, so that its label maps have real boundaries
(agreement between two loops on a random network is meaningless). The weights are cached under
``~/.cache/svseg/benchmarks/``. The volume is the same T1 resampled in-plane to 512 x 512 (the
Synapse slice size; 189 axial slices), intensities scaled to [0, 1].

Both loops use the same network and weights:

* reference: TransUNet/MSA2Net ``test_single_volume``: per slice, ``scipy.ndimage.zoom(order=3)`` to
  224 x 224, network at batch 1 under ``no_grad``, softmax, argmax, ``zoom(order=0)`` back;
* svseg: :meth:`svseg.inference.VolumeSliceInferer.predict_labels` with ``mode="transunet"``:
  ``zoom_backend="scipy"`` (exact procedure, batched network calls) and ``zoom_backend="torch"``
  (batched bicubic ``interpolate``, index-exact nearest upsampling, ``inference_mode``), in float32
  and under bfloat16 autocast.

Reported: median wall time of each loop (measured interleaved, repeat by repeat), speed-up,
voxel agreement with the reference label map, Dice against the template labels, and the achieved
FLOP/s of the network (``torch.utils.flop_counter`` FLOPs / time) against the measured FLOP/s of a
2048 x 2048 matrix product at the same thread count.

Usage::

    python benchmarks/inference.py --threads 1 --repeats 3 --json results.json
"""
from __future__ import annotations

import datetime
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import benchmark_parser, machine_stamp, save_results

ROI = (224, 224)


def build_volume(size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 T1 in [0, 1] and its background/GM/WM labels, resampled in-plane to ``size`` x ``size``."""
    from nilearn import datasets
    from scipy.ndimage import zoom

    t1 = datasets.load_mni152_template(resolution=1).get_fdata(dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    factors = (size / t1.shape[0], size / t1.shape[1], 1.0)
    t1 = zoom(t1, factors, order=1)
    gm = zoom(gm, factors, order=1)
    wm = zoom(wm, factors, order=1)
    t1 = (t1 - t1.min()) / (t1.max() - t1.min())
    labels = np.where(np.maximum(gm, wm) < 0.5, 0, np.where(gm >= wm, 1, 2)).astype(np.uint8)
    return t1.astype(np.float32), labels


def build_network() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(2, 1, 3, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def train_or_load(net: torch.nn.Module, vol: np.ndarray, lab: np.ndarray, iters: int, cache: Path) -> dict:
    """Fit the network on axial slices resized to 224 (AdamW 3e-3, Dice+CE, batch 4), or load cached weights."""
    if cache.is_file():
        net.load_state_dict(torch.load(cache, map_location="cpu"))
        return {"trained_now": False, "cache": str(cache)}
    from monai.losses import DiceCELoss

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    brain = np.flatnonzero((lab > 0).reshape(-1, lab.shape[2]).sum(0) > 2000)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    net.train()
    t = time.perf_counter()
    for _ in range(iters):
        idx = rng.choice(brain, 4)
        x = torch.from_numpy(np.stack([vol[..., i] for i in idx]))[:, None]
        y = torch.from_numpy(np.stack([lab[..., i] for i in idx]).astype(np.float32))[:, None]
        x = F.interpolate(x, size=ROI, mode="bicubic", align_corners=True)
        y = F.interpolate(y, size=ROI, mode="nearest")
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), cache)
    return {"trained_now": True, "iterations": iters, "train_s": time.perf_counter() - t, "final_loss": float(loss)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(vol: np.ndarray, net: torch.nn.Module, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """TransUNet's test_single_volume loop (slices along the last axis here), batch 1, scipy zoom."""
    from scipy.ndimage import zoom

    prediction = np.zeros(vol.shape, dtype=np.uint8)
    for ind in range(vol.shape[2]):
        sl = vol[:, :, ind]
        x, y = sl.shape
        sl = zoom(sl, (ROI[0] / x, ROI[1] / y), order=3)
        inp = torch.from_numpy(sl).unsqueeze(0).unsqueeze(0).float().to(device)
        with torch.no_grad():
            out = torch.argmax(torch.softmax(net(inp), dim=1), dim=1).squeeze(0).cpu().numpy()
        prediction[:, :, ind] = zoom(out, (x / ROI[0], y / ROI[1]), order=0)
    return prediction


def matmul_flops(n: int = 2048, dtype=torch.float32, reps: int = 5, device=torch.device("cpu")) -> float:
    a = torch.rand(n, n, dtype=dtype, device=device)
    b = torch.rand(n, n, dtype=dtype, device=device)
    a @ b
    _sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2.0 * n**3 / statistics.median(times)


def network_flops(net: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, *ROI))
    return float(counter.get_total_flops())


def dice_fg(pred: np.ndarray, lab: np.ndarray) -> dict:
    out = {}
    for c, name in ((1, "grey_matter"), (2, "white_matter")):
        p, g = pred == c, lab == c
        out[name] = float(2 * np.count_nonzero(p & g) / max(np.count_nonzero(p) + np.count_nonzero(g), 1))
    return out


def main(argv=None) -> dict:
    from svseg.inference import VolumeSliceInferer

    parser = benchmark_parser(__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-iters", type=int, default=120)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "svseg" / "benchmarks" / "unet_mni152_224.pt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (training always runs on CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    vol, lab = build_volume()
    net = build_network()
    train_info = train_or_load(net, vol, lab, args.train_iters, args.cache)
    net.eval()
    flops_per_slice = network_flops(net)
    net.to(device)
    x = torch.from_numpy(vol)[None, None]
    n_slices = vol.shape[2]
    variants = {
        "svseg_exact_scipy_fp32": VolumeSliceInferer(ROI, axis=2, batch_size=args.batch_size, mode="transunet", zoom_backend="scipy"),
        "svseg_torch_fp32": VolumeSliceInferer(ROI, axis=2, batch_size=args.batch_size, mode="transunet", zoom_backend="torch"),
        "svseg_torch_bf16": VolumeSliceInferer(
            ROI, axis=2, batch_size=args.batch_size, mode="transunet", zoom_backend="torch", amp_dtype=torch.bfloat16
        ),
    }
    times: dict[str, list[float]] = {"reference": [], **{k: [] for k in variants}, "net_only_fp32": [], "net_only_bf16": []}
    mm: dict[str, list[float]] = {"fp32": [], "bf16": []}
    preds: dict[str, np.ndarray] = {}
    batch224 = F.interpolate(x[0].permute(3, 0, 1, 2), size=ROI, mode="bicubic", align_corners=True).to(device)
    amp_device = device.type
    for _ in range(args.repeats):
        t = time.perf_counter()
        preds["reference"] = reference_loop(vol, net, device)
        _sync(device)
        times["reference"].append(time.perf_counter() - t)
        for name, inferer in variants.items():
            t = time.perf_counter()
            labels = inferer.predict_labels(x, net)
            _sync(device)
            times[name].append(time.perf_counter() - t)
            preds[name] = labels[0].numpy().astype(np.uint8)
            del labels
        for name, amp in (("net_only_fp32", None), ("net_only_bf16", torch.bfloat16)):
            t = time.perf_counter()
            with torch.inference_mode():
                for s in range(0, n_slices, args.batch_size):
                    if amp is None:
                        net(batch224[s: s + args.batch_size])
                    else:
                        with torch.autocast(amp_device, dtype=amp):
                            net(batch224[s: s + args.batch_size])
            _sync(device)
            times[name].append(time.perf_counter() - t)
        mm["fp32"].append(matmul_flops(device=device))
        mm["bf16"].append(matmul_flops(dtype=torch.bfloat16, device=device))

    med = {k: statistics.median(v) for k, v in times.items()}
    mm_med = {k: statistics.median(v) for k, v in mm.items()}
    total_flops = flops_per_slice * n_slices
    ref = preds["reference"]
    result = {
        "machine": machine_stamp(f"torch {torch.__version__}") + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "threads": args.threads,
        "volume_shape": list(vol.shape),
        "network": "monai UNet 2D (16,32,64,128,256), 2 res units, 1.63 M params",
        "params": sum(p.numel() for p in net.parameters()),
        "gflop_per_slice": flops_per_slice / 1e9,
        "train": train_info,
        "median_s": med,
        "all_s": times,
        "speedup_vs_reference": {k: med["reference"] / med[k] for k in variants},
        "agreement_vs_reference": {k: float((preds[k] == ref).mean()) for k in variants},
        "dice_vs_template": {k: dice_fg(v, lab) for k, v in preds.items()},
        "matmul_gflops": {k: v / 1e9 for k, v in mm_med.items()},
        "achieved_gflops": {
            "reference_loop_whole": total_flops / med["reference"] / 1e9,
            **{f"{k}_whole": total_flops / med[k] / 1e9 for k in variants},
            "net_only_fp32": total_flops / med["net_only_fp32"] / 1e9,
            "net_only_bf16": total_flops / med["net_only_bf16"] / 1e9,
        },
    }
    result["fraction_of_matmul"] = {
        "svseg_torch_fp32_whole": result["achieved_gflops"]["svseg_torch_fp32_whole"] / result["matmul_gflops"]["fp32"],
        "net_only_fp32": result["achieved_gflops"]["net_only_fp32"] / result["matmul_gflops"]["fp32"],
        "svseg_torch_bf16_whole_vs_bf16_matmul": result["achieved_gflops"]["svseg_torch_bf16_whole"] / result["matmul_gflops"]["bf16"],
        "net_only_bf16_vs_bf16_matmul": result["achieved_gflops"]["net_only_bf16"] / result["matmul_gflops"]["bf16"],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "all_s"}, indent=2))
    save_results(result, args.json)
    return result


if __name__ == "__main__":
    main()
