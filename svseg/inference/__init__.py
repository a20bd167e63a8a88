"""svseg inference: slice-batched 2D-on-3D inference, 3D sliding window, TTA, post-processing, NIfTI.

* :class:`SliceInferer` - a MONAI ``Inferer`` running a 2D network over ``(B, C, H, W, D)`` volumes
  (``resize``, ``sliding_window`` or the TransUNet ``transunet`` procedure);
* :class:`VolumeInferer` - 3D sliding window with flip TTA;
* :func:`keep_largest_component`, :func:`write_nifti`, :func:`predict_volume`, :func:`predict_files`.
"""
from __future__ import annotations

from svseg.inference.postprocessing import keep_largest_component
from svseg.inference.predict import predict_files, predict_volume
from svseg.inference.slice_inferer import (
    SliceInferer,
    VolumeInferer,
    argmax_channels,
    network_output,
    scipy_nearest_indices,
)
from svseg.inference.writer import reference_affine, write_nifti

__all__ = [
    "SliceInferer",
    "VolumeInferer",
    "argmax_channels",
    "keep_largest_component",
    "network_output",
    "predict_files",
    "predict_volume",
    "reference_affine",
    "scipy_nearest_indices",
    "write_nifti",
]
