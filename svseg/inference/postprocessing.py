"""Post-processing of predicted label maps."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = ["keep_largest_component"]


def keep_largest_component(
    labels: Any, classes: Sequence[int] | None = None, connectivity: int | None = None
) -> Any:
    """Keep, for each class, only its largest connected component (others become background 0).

    Args:
        labels: integer label map (numpy array or tensor, 2D or 3D, optionally with leading singleton
            dims); returned in the same type, dtype and device.
        classes: label ids to process (default: every non-zero id present).
        connectivity: neighbourhood of the components (1 = faces ... ndim = full, the default, as
            MONAI's ``KeepLargestConnectedComponent``).

    Ties between equally large components keep the one met first in C order.
    """
    is_tensor = isinstance(labels, torch.Tensor)
    arr = labels.detach().cpu().numpy() if is_tensor else np.asarray(labels)
    if arr.dtype == bool:
        work = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        work = arr.copy()
    else:
        if np.any(np.rint(arr) != arr):
            raise ValueError("labels must hold integer label ids.")
        work = arr.astype(np.int64)
    view = work
    while view.ndim > 3 and view.shape[0] == 1:
        view = view[0]
    ndim = view.ndim
    structure = ndimage.generate_binary_structure(ndim, ndim if connectivity is None else connectivity)
    ids = [int(c) for c in np.unique(view) if c > 0] if classes is None else [int(c) for c in classes]
    if not ids:
        return labels
    boxes = ndimage.find_objects(view.astype(np.int64, copy=False) if view.dtype.kind == "u" and view.itemsize >= 8 else view, max_label=max(ids))
    for c in ids:
        if c <= 0 or boxes[c - 1] is None:
            continue
        region = view[boxes[c - 1]]
        mask = region == c
        comp, n = ndimage.label(mask, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        region[mask & (comp != int(np.argmax(sizes)))] = 0
    out = work.astype(arr.dtype, copy=False)
    if is_tensor:
        return torch.as_tensor(out, device=labels.device)
    return out
