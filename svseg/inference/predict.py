"""Volume prediction API: label maps from a network and an inferer, written as NIfTI."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svseg.inference.postprocessing import keep_largest_component
from svseg.inference.writer import write_nifti

__all__ = ["predict_volume", "predict_files"]


def predict_volume(
    image: Any,
    network: Callable[..., Any],
    inferer: Callable[..., torch.Tensor],
    keep_largest: bool | Sequence[int] = False,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Label map of one volume.

    Args:
        image: ``(H, W, D)`` or ``(C, H, W, D)`` array or tensor, already normalised as the network expects.
        network: the network (put in eval mode here if it is a ``torch.nn.Module``).
        inferer: e.g. :class:`~svseg.inference.SliceInferer` or :class:`~svseg.inference.VolumeInferer`.
        keep_largest: keep only the largest connected component of every class (``True``) or of the
            listed label ids.
        device: where to put the input (default: the network's device).

    Returns:
        ``(H, W, D)`` integer label map (numpy, ``uint8`` for fewer than 256 classes).
    """
    x = image.detach() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"image must be (H, W, D) or (C, H, W, D), got shape {tuple(x.shape)}.")
    if isinstance(network, torch.nn.Module):
        network.eval()
        if device is None:
            p = next(iter(network.parameters()), None)
            device = p.device if p is not None else None
    x = x[None].float()
    if device is not None:
        x = x.to(device)
    if hasattr(inferer, "predict_labels"):  # SliceInferer: no (K, H, W, D) score volume in memory
        labels_t = inferer.predict_labels(x, network)[0]
    else:
        labels_t = torch.argmax(inferer(x, network)[0], dim=0)
    top = int(labels_t.max()) if labels_t.numel() else 0
    labels = labels_t.cpu().numpy().astype(np.uint8 if top < 256 else np.int32)
    if keep_largest:
        classes = None if keep_largest is True else list(keep_largest)
        labels = keep_largest_component(labels, classes=classes)
    return labels


def predict_files(
    image_paths: Sequence[str | os.PathLike],
    network: Callable[..., Any],
    output_dir: str | os.PathLike,
    inferer: Callable[..., torch.Tensor],
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    keep_largest: bool | Sequence[int] = False,
    suffix: str = "",
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Predict NIfTI volumes and write ``<output_dir>/<name><suffix>.nii.gz`` with the input's affine.

    Args:
        image_paths: NIfTI images (3D, or 4D with channels last as NIfTI stores them).
        network: the network.
        output_dir: output folder (created).
        inferer: the inferer (see :func:`predict_volume`).
        preprocess: intensity preprocessing of the ``(H, W, D)`` / ``(H, W, D, C)`` array (e.g. a CT window);
            ``None`` feeds the raw intensities.
        keep_largest: see :func:`predict_volume`.
        suffix: added to the case name (``case01`` -> ``case01<suffix>.nii.gz``).
        device: where to run the network.
        progress: show a progress bar over files.

    Returns:
        The written paths, in input order.
    """
    import nibabel as nib

    paths = [Path(p) for p in image_paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"image {str(p)!r} does not exist.")
    out_dir = Path(output_dir)
    iterator: Any = paths
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(paths, desc="predict", unit="case")
    written = []
    for p in iterator:
        img = nib.load(str(p))
        data = np.asarray(img.get_fdata(dtype=np.float32))
        if preprocess is not None:
            data = np.asarray(preprocess(data), dtype=np.float32)
        if data.ndim == 4:
            data = np.moveaxis(data, -1, 0)
        labels = predict_volume(data, network, inferer, keep_largest=keep_largest, device=device)
        name = p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else p.stem
        written.append(write_nifti(labels, img, out_dir / f"{name}{suffix}.nii.gz"))
    return written
