"""Python glue that the bundle configs (``bundles/<net>/configs/*.json``) call.

The configs stay short and identical in structure across the five bundles: everything that
depends on the dataset (class names, intensity rule, splits, evaluation protocol) comes from
:mod:`svseg.data.datasets` through the functions here, and everything that depends on the paper
(loss, optimiser, augmentation preset) is named in the bundle's ``train.json``.

A dataset is chosen by ``dataset_name`` and ``data_root``. Without a ``data_root`` the bundle
runs on the demo data (MNI152 grey/white matter), whatever ``dataset_name`` says, so every bundle
trains and evaluates out of the box.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from svseg.bundle import _compat

__all__ = [
    "resolve_device",
    "effective_dataset",
    "num_classes",
    "class_names",
    "roi_size",
    "protocol",
    "inference_mode",
    "datalist",
    "scaled_lr",
    "volume_transforms",
    "intensity_transforms",
    "slice_transforms",
    "poly_scheduler",
    "slice_inferer",
    "val_dataset",
    "PeriodicValidation",
    "LabelCrossEntropyLoss",
    "TensorBoardStats",
    "HalveLROnStall",
    "warmup_cosine_scheduler",
    "evaluate_volumes",
    "predict_volumes",
    "inference_datalist",
    "init_distributed",
    "destroy_distributed",
    "rank_zero_handlers",
]

logger = logging.getLogger(__name__)

DATASET_NAMES = ("synapse", "lits", "acdc", "demo")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU; strings pass through."""
    if isinstance(device, torch.device):
        return device
    if device is None or str(device).lower() == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    return torch.device(str(device))


def effective_dataset(dataset_name: str, data_root: str | None) -> str:
    """The dataset whose rules apply: ``dataset_name``, or ``"demo"`` when no ``data_root`` is given."""
    name = str(dataset_name).lower()
    if name not in DATASET_NAMES:
        raise ValueError(f"dataset_name must be one of {DATASET_NAMES}, got {dataset_name!r}.")
    if data_root in (None, "", "None", "null"):
        return "demo"
    return name


def _root(data_root: str | None) -> str | None:
    return None if data_root in (None, "", "None", "null") else str(data_root)


def class_names(dataset_name: str, data_root: str | None = None) -> list[str]:
    """Class names (index = label id, background first) of the effective dataset."""
    return _compat.class_names(effective_dataset(dataset_name, data_root))


def num_classes(dataset_name: str, data_root: str | None = None) -> int:
    """Number of output channels (background included) of the effective dataset."""
    return len(class_names(dataset_name, data_root))


def roi_size(dataset_name: str, data_root: str | None = None, default: Sequence[int] | None = None) -> list[int]:
    """2D network input size: ``default`` (the paper's) if given, else the dataset's default ROI."""
    if default is not None:
        return [int(v) for v in default]
    spec = _compat.get_dataset_spec(effective_dataset(dataset_name, data_root))
    roi = _compat.spec_field(spec, "roi_size", (224, 224))
    return [int(v) for v in roi][:2]


def protocol(dataset_name: str, data_root: str | None = None) -> str:
    """Evaluation protocol the effective dataset is published with (``transunet`` or ``standard``)."""
    spec = _compat.get_dataset_spec(effective_dataset(dataset_name, data_root))
    return str(_compat.spec_field(spec, "protocol", "standard"))


def inference_mode(dataset_name: str, data_root: str | None = None) -> str:
    """Slice inference mode: ``transunet`` (cubic zoom, as the published Synapse/ACDC numbers) or ``resize``."""
    return "transunet" if protocol(dataset_name, data_root) == "transunet" else "resize"


def datalist(dataset_name: str, data_root: str | None, split: str) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of ``split`` (``training``, ``validation``, ``test``).

    ``validation`` falls back to ``test`` when a dataset has no validation split (Synapse, like
    the MSA2Net code, selects on the test volumes), and ``test`` falls back to ``validation``.
    """
    name = effective_dataset(dataset_name, data_root)
    order = {"training": ["training"], "validation": ["validation", "test"], "test": ["test", "validation"]}
    if split not in order:
        raise ValueError(f"split must be one of {sorted(order)}, got {split!r}.")
    return _compat.datalist_for(name, _root(data_root), order[split])


def scaled_lr(base_lr: float, batch_size: int, reference_batch: int = 24, divisor: int = 5) -> float:
    """The MSA2Net/TransUNet rule: ``lr = base_lr * bs / 24`` if ``bs != 24`` and ``bs % 5 == 0``."""
    batch_size = int(batch_size)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if batch_size != reference_batch and batch_size % divisor == 0:
        return float(base_lr) * batch_size / reference_batch
    return float(base_lr)


# ----------------------------------------------------------------------------------------------
# transforms
# ----------------------------------------------------------------------------------------------
def _intensity(name: str) -> list:
    """Intensity handling of prepared data of dataset ``name``.

    The svseg converters apply each dataset's intensity rule once, when they write the prepared
    data (``DatasetSpec.intensity`` / ``prepared_range``); the bundles read prepared data, so
    only a clip to the prepared range is applied here (guards against stray values).
    """
    from monai import transforms as mt

    spec = _compat.get_dataset_spec(name)
    lo, hi = _compat.spec_field(spec, "prepared_range", (0.0, 1.0))
    if lo is None or hi is None:
        return []
    return [mt.ThresholdIntensityd("image", threshold=float(lo), above=True, cval=float(lo)),
            mt.ThresholdIntensityd("image", threshold=float(hi), above=False, cval=float(hi))]


def intensity_transforms(dataset_name: str, data_root: str | None, mean: float = 0.0, std: float = 1.0) -> Any:
    """Post-load image transforms: clip to the dataset's prepared range, then ``(x - mean) / std``."""
    from monai import transforms as mt

    xs: list = [*_intensity(effective_dataset(dataset_name, data_root))]
    if mean != 0.0 or std != 1.0:
        xs.append(mt.NormalizeIntensityd("image", subtrahend=float(mean), divisor=float(std)))
    xs.append(mt.EnsureTyped(keys=["image", "label"], dtype=torch.float32, allow_missing_keys=True, track_meta=True))
    return mt.Compose(xs)


def volume_transforms(dataset_name: str, data_root: str | None, mean: float = 0.0, std: float = 1.0) -> Any:
    """Load a whole image/label volume channel first (:func:`svseg.data.volume_transforms`: NIfTI, H5 or
    npz with ``file::key`` selectors, metadata kept), then :func:`intensity_transforms`."""
    from monai import transforms as mt

    from svseg.data import volume_transforms as data_volume_transforms

    name = effective_dataset(dataset_name, data_root)
    return mt.Compose([data_volume_transforms(name, prepared=True),
                       intensity_transforms(dataset_name, data_root, mean=mean, std=std)])


def _augmentation(preset: str, roi: Sequence[int]) -> list:
    """MONAI equivalents of each paper's 2D training augmentation (``none`` disables it)."""
    from monai import transforms as mt

    keys = ["image", "label"]
    modes = ("bilinear", "nearest")
    preset = str(preset).lower()
    if preset == "none":
        return []
    if preset == "msa2net":  # imgaug SomeOf(0-4) of flips, noise, blur, contrast, affine, piecewise affine
        ops = [
            mt.RandFlipd(keys, prob=1.0, spatial_axis=0),
            mt.RandFlipd(keys, prob=1.0, spatial_axis=1),
            mt.RandGaussianNoised("image", prob=1.0, std=0.005),
            mt.RandGaussianSmoothd("image", prob=1.0, sigma_x=(1.0, 1.0), sigma_y=(1.0, 1.0)),
            mt.RandAdjustContrastd("image", prob=1.0, gamma=(0.5, 1.5)),
            mt.RandAffined(keys, prob=1.0, scale_range=(0.5, 0.5), mode=modes, padding_mode="zeros"),
            mt.RandAffined(keys, prob=1.0, rotate_range=(np.deg2rad(40),), mode=modes, padding_mode="zeros"),
            mt.RandAffined(keys, prob=1.0, shear_range=(0.29, 0.29), mode=modes, padding_mode="zeros"),
            mt.Rand2DElasticd(keys, prob=1.0, spacing=(32, 32), magnitude_range=(1, 3), mode=modes,
                              padding_mode="zeros"),
            mt.RandAffined(keys, prob=1.0, translate_range=(0.2 * roi[0], 0.2 * roi[1]), mode=modes,
                           padding_mode="zeros"),
        ]
        return [mt.SomeOf(ops, num_transforms=(0, 4))]
    if preset == "sa2net":  # UCTransNet: random rot90/flip or rotation
        return [mt.RandRotate90d(keys, prob=0.5), mt.RandFlipd(keys, prob=0.5, spatial_axis=0),
                mt.RandRotated(keys, range_x=np.deg2rad(20), prob=0.5, mode=modes)]
    if preset == "afma":  # albumentations: hflip, shift-scale, noise, brightness/contrast/gamma, blur
        return [
            mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
            mt.RandAffined(keys, prob=0.5, scale_range=(0.5, 0.5), translate_range=(0.1 * roi[0], 0.1 * roi[1]),
                           mode=modes, padding_mode="zeros"),
            mt.RandGaussianNoised("image", prob=0.2, std=0.02),
            mt.OneOf([mt.RandScaleIntensityd("image", factors=0.2, prob=1.0),
                      mt.RandAdjustContrastd("image", gamma=(0.8, 1.2), prob=1.0)]),
            mt.RandGaussianSmoothd("image", prob=0.3, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
        ]
    if preset == "msga":  # vertical flip, mirror, rotation +-30 deg (p 0.5 each)
        return [mt.RandFlipd(keys, prob=0.5, spatial_axis=0), mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
                mt.RandRotated(keys, range_x=np.deg2rad(30), prob=0.5, mode=modes)]
    if preset == "svanet":  # short-side resize jitter, hflip, blur, photometric, rotation +-10 deg
        return [
            mt.RandZoomd(keys, prob=0.5, min_zoom=0.5, max_zoom=1.5, mode=("bilinear", "nearest"), keep_size=True),
            mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
            mt.RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
            mt.RandScaleIntensityd("image", factors=0.2, prob=0.5),
            mt.RandRotated(keys, range_x=np.deg2rad(10), prob=0.5, mode=modes),
        ]
    raise ValueError(f"augmentation must be one of msa2net, sa2net, afma, msga, svanet, none; got {preset!r}.")


def slice_transforms(roi: Sequence[int], augmentation: str = "none") -> Any:
    """2D transforms of one slice dict: resize to ``roi`` (bilinear image, nearest label), then augment."""
    from monai import transforms as mt

    roi = [int(v) for v in roi]
    return mt.Compose([
        mt.Resized(keys=["image", "label"], spatial_size=roi, mode=("bilinear", "nearest")),
        *_augmentation(augmentation, roi),
        mt.EnsureTyped(keys=["image", "label"], dtype=torch.float32, track_meta=False),
    ])


def slice_inferer(roi: Sequence[int], mode: str = "resize", batch_size: int = 16) -> Any:
    """:class:`svseg.inference.SliceInferer` over axial slices (axis 2) at the network input size ``roi``."""
    return _compat.make_slice_inferer([int(v) for v in roi], axis=2, batch_size=int(batch_size), mode=mode)


def val_dataset(dataset_name: str, data_root: str | None, split: str = "validation", mean: float = 0.0,
                std: float = 1.0, max_cases: int | None = None) -> Dataset:
    """Whole volumes of ``split`` (no resizing: the slice inferer resizes per slice)."""
    from monai.data import Dataset as MDataset

    items = datalist(dataset_name, data_root, split)
    if max_cases:
        items = items[: int(max_cases)]
    return MDataset(items, volume_transforms(dataset_name, data_root, mean=mean, std=std))


def poly_scheduler(optimizer: torch.optim.Optimizer, max_epochs: int, epoch_length: int,
                   power: float = 0.9) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly decay per iteration, ``lr = base * (1 - it / (max_epochs * epoch_length)) ** power``."""
    total = int(max_epochs) * int(epoch_length)
    if total <= 0:
        raise ValueError(f"max_epochs * epoch_length must be positive, got {max_epochs} * {epoch_length}.")
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=float(power))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, max_epochs: int, epoch_length: int,
                            warmup_epochs: float = 1.0, warmup_init_lr: float = 5e-5, min_lr: float = 1e-6
                            ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration linear warm-up from ``warmup_init_lr`` to the optimizer's LR, then cosine down to ``min_lr``.

    SvANet's ``mycosine`` shape (AdamW max LR 5e-4, warm-up start 5e-5, final 1e-6).
    """
    total = int(max_epochs) * int(epoch_length)
    if total <= 0:
        raise ValueError(f"max_epochs * epoch_length must be positive, got {max_epochs} * {epoch_length}.")
    warm = min(max(int(round(float(warmup_epochs) * int(epoch_length))), 0), total - 1)
    base = [g["lr"] for g in optimizer.param_groups]
    import math

    def factor(i: int, b: float) -> float:
        if i < warm:
            return (warmup_init_lr + (b - warmup_init_lr) * i / max(warm, 1)) / b
        t = (i - warm) / max(total - warm, 1)
        return (min_lr + 0.5 * (b - min_lr) * (1.0 + math.cos(math.pi * min(t, 1.0)))) / b

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda i, b=b: factor(i, b) for b in base])


class HalveLROnStall:
    """MSGA's schedule: halve the LR whenever ``epoch % (best_epoch + patience) == 0``.

    ``best_epoch`` is the validator's best key-metric epoch (MONAI evaluators track
    ``state.best_metric_epoch``), 0 before any validation, as in the authors' ``main.py``.

    Args:
        optimizer: the optimizer whose LR is halved.
        validator: the evaluator that selects the best epoch.
        patience: the ``50`` of the authors' rule.
        factor: multiplier applied (0.5).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, validator: Any = None, patience: int = 50,
                 factor: float = 0.5) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}.")
        self.optimizer = optimizer
        self.validator = validator
        self.patience = int(patience)
        self.factor = float(factor)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        best = 0
        if self.validator is not None:
            best = max(int(getattr(self.validator.state, "best_metric_epoch", -1) or 0), 0)
        if engine.state.epoch % (best + self.patience) == 0:
            for g in self.optimizer.param_groups:
                g["lr"] *= self.factor
            logger.info("epoch %d: LR halved to %.3g (best epoch %d)", engine.state.epoch,
                        self.optimizer.param_groups[0]["lr"], best)


class PeriodicValidation:
    """Run ``validator`` every ``interval`` epochs from ``start_epoch`` on, and always after the last epoch.

    The MSA2Net recipe evaluates from half the schedule on; running at the last epoch as well
    guarantees that the key-metric checkpoint exists after any schedule. With
    ``early_stop_patience`` the training stops once the key metric has not improved for that many
    epochs (SA2-Net's early stopping), read from the validator's ``best_metric_epoch``.

    Args:
        validator: a MONAI evaluator.
        interval: validate every ``interval`` epochs.
        start_epoch: first epoch that may validate.
        early_stop_patience: stop after this many epochs without a new best metric (``None``: never).
    """

    def __init__(self, validator: Any, interval: int = 1, start_epoch: int = 0,
                 early_stop_patience: int | None = None) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        if early_stop_patience is not None and int(early_stop_patience) < 1:
            raise ValueError(f"early_stop_patience must be None or >= 1, got {early_stop_patience}.")
        self.validator = validator
        self.interval = int(interval)
        self.start_epoch = int(start_epoch)
        self.early_stop_patience = None if early_stop_patience is None else int(early_stop_patience)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        epoch = engine.state.epoch
        last = epoch >= engine.state.max_epochs
        if not (last or (epoch >= self.start_epoch and epoch % self.interval == 0)):
            return
        self.validator.run(epoch)
        if self.early_stop_patience is None or last:
            return
        best = int(getattr(self.validator.state, "best_metric_epoch", -1) or -1)
        if best > 0 and epoch - best >= self.early_stop_patience:
            logger.info("early stopping at epoch %d: no better key metric since epoch %d", epoch, best)
            engine.terminate()


def _tensorboard_handler_base() -> type:
    from monai.handlers import TensorBoardStatsHandler

    return TensorBoardStatsHandler


class TensorBoardStats:
    """MONAI's ``TensorBoardStatsHandler`` that opens its event file only when attached.

    MONAI's handler creates its ``SummaryWriter`` (and an event file) in ``__init__``; under DDP
    every rank builds the handler list, so ranks that never attach it would still write empty
    event files. This wrapper builds the MONAI handler in :meth:`attach`, so only the ranks that
    use it (rank 0, see :func:`rank_zero_handlers`) write anything. Arguments are those of
    ``monai.handlers.TensorBoardStatsHandler``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.handler: Any = None

    def attach(self, engine: Any) -> None:
        self.handler = _tensorboard_handler_base()(**self.kwargs)
        self.handler.attach(engine)

    def close(self) -> None:
        if self.handler is not None:
            self.handler.close()


class LabelCrossEntropyLoss(torch.nn.Module):
    """Cross-entropy on logits ``(B, K, *S)`` against an integer label map ``(B, 1, *S)`` (SvANet's loss).

    Args:
        weight: optional per-class weights.
        ignore_index: label value excluded from the loss (the authors use 255 for padding).
    """

    def __init__(self, weight: Sequence[float] | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = int(ignore_index)

    def forward(self, prediction: Any, target: torch.Tensor) -> torch.Tensor:
        logits = prediction[0] if isinstance(prediction, (tuple, list)) else prediction
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.round().long() if target.is_floating_point() else target.long()
        return torch.nn.functional.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index)


# ----------------------------------------------------------------------------------------------
# evaluation and inference over volumes
# ----------------------------------------------------------------------------------------------
def _load_weights(network: torch.nn.Module, ckpt_path: str | None, device: torch.device) -> None:
    if not ckpt_path:
        return
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"checkpoint {ckpt_path!r} does not exist: run training first or pass --ckpt_path.")
    state = torch.load(ckpt_path, map_location=device, weights_only=True)
    if isinstance(state, dict) and "network" in state and isinstance(state["network"], dict):
        state = state["network"]
    target = network.module if hasattr(network, "module") else network
    target.load_state_dict(state)


def _spacing(image: Any) -> tuple | None:
    meta = getattr(image, "meta", None)
    if not meta or "pixdim" not in meta:
        return None
    pix = np.asarray(meta["pixdim"]).reshape(-1)
    return tuple(float(v) for v in pix[1:4])


def evaluate_volumes(network: torch.nn.Module, dataset: Dataset, inferer: Callable, class_names: Sequence[str],
                     output_dir: str, protocol: str = "standard", device: str | torch.device = "cpu",
                     ckpt_path: str | None = None, save_predictions: bool = False,
                     overlays: bool = True) -> dict:
    """Predict every volume of ``dataset`` slice by slice and write ``metrics.csv`` + ``summary.json``.

    Metrics are computed in 3D on each whole volume by :mod:`svseg.evaluation` (one row per case
    and class). With ``overlays`` an ``overlays/<case>.png`` (a few slices, ground-truth and
    prediction contours) is drawn per case; ``save_predictions`` writes
    ``predictions/<case>.nii.gz`` with the image's original affine. Returns the summary dict.
    """
    device = resolve_device(device)
    network = network.to(device)
    _load_weights(network, ckpt_path, device)
    network.eval()
    rows: list[dict] = []
    os.makedirs(output_dir, exist_ok=True)
    for i in range(len(dataset)):
        d = dataset[i]
        case = str(d.get("case", f"case{i:04d}"))
        image = d["image"]
        spacing = _spacing(image)
        with torch.no_grad():
            logits = inferer(torch.as_tensor(image)[None].to(device), network)
        pred = torch.argmax(logits, dim=1)[0].cpu().numpy().astype(np.uint8)
        ref = np.asarray(torch.as_tensor(d["label"])[0].cpu().numpy()).round().astype(np.uint8)
        rows.extend(_compat.evaluate_case(pred, ref, class_names=list(class_names), spacing=spacing,
                                          protocol=protocol, case=case))
        if save_predictions:
            from svseg.inference import write_nifti

            write_nifti(pred, image, os.path.join(output_dir, "predictions", f"{case}.nii.gz"))
        if overlays:
            from svseg.report import write_case_overlay

            try:
                write_case_overlay(image, d["label"], pred, output_dir, case, class_names=list(class_names))
            except Exception as e:  # a picture must never cost the metrics; say why it is missing
                logger.warning("overlay for %s not drawn: %s: %s", case, type(e).__name__, e)
        logger.info("evaluated %s (%d/%d)", case, i + 1, len(dataset))
    summary = _compat.write_report(rows, output_dir, protocol=protocol)
    logger.info("wrote %s and %s", os.path.join(output_dir, "metrics.csv"), os.path.join(output_dir, "summary.json"))
    return summary


def predict_volumes(network: torch.nn.Module, dataset: Dataset, inferer: Callable, output_dir: str,
                    device: str | torch.device = "cpu", ckpt_path: str | None = None) -> list[str]:
    """Write one NIfTI label map per volume of ``dataset`` (``<output_dir>/<case>_seg.nii.gz``, input affine kept)."""
    from svseg.inference import write_nifti

    device = resolve_device(device)
    network = network.to(device)
    _load_weights(network, ckpt_path, device)
    network.eval()
    written = []
    for i in range(len(dataset)):
        d = dataset[i]
        image = d["image"]
        case = d.get("case")
        if case is None:
            src = getattr(image, "meta", {}).get("filename_or_obj", f"case{i:04d}")
            case = os.path.basename(str(src)).split(".")[0]
        with torch.no_grad():
            logits = inferer(torch.as_tensor(image)[None].to(device), network)
        pred = torch.argmax(logits, dim=1)[0].cpu().numpy().astype(np.uint8)
        written.append(str(write_nifti(pred, image, os.path.join(output_dir, f"{case}_seg.nii.gz"))))
        logger.info("predicted %s -> %s", case, written[-1])
    return written


def inference_datalist(input_dir: str | None, dataset_name: str, data_root: str | None) -> list[dict]:
    """Images to predict: every NIfTI/H5 file in ``input_dir``, else the test split of the dataset."""
    if input_dir in (None, "", "None", "null"):
        return [{"image": d["image"], "case": d.get("case")} for d in datalist(dataset_name, data_root, "test")]
    if not os.path.isdir(str(input_dir)):
        raise FileNotFoundError(f"input_dir {input_dir!r} is not a folder.")
    exts = (".nii", ".nii.gz", ".h5", ".npy.h5", ".nrrd", ".mha")
    files = sorted(f for f in os.listdir(input_dir) if f.lower().endswith(exts))
    if not files:
        raise FileNotFoundError(f"input_dir {input_dir!r} holds no image files ({', '.join(exts)}).")
    return [{"image": os.path.join(str(input_dir), f), "case": f.split(".")[0]} for f in files]


# ----------------------------------------------------------------------------------------------
# distributed (torchrun) helpers used by multi_gpu_train.json
# ----------------------------------------------------------------------------------------------
_RANK0_ONLY = ("CheckpointSaver", "StatsHandler", "TensorBoardStatsHandler", "TensorBoardStats", "MLFlowHandler",
               "ProgressPlot", "AtomicCheckpointSaver", "EpochProgressBar")


def init_distributed(backend: str | None = None) -> None:
    """Join the torchrun process group: ``nccl`` on GPUs, ``gloo`` on CPU (chosen automatically)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)


def destroy_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_zero_handlers(handlers: Sequence[Any] | None) -> list:
    """All handlers on rank 0; on other ranks drop those that save or log (checkpoints, stats, plots)."""
    import torch.distributed as dist

    handlers = list(handlers or [])
    if not dist.is_initialized() or dist.get_rank() == 0:
        return handlers
    return [h for h in handlers if type(h).__name__ not in _RANK0_ONLY]
