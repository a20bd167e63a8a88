"""svseg inference: slice-batched 2D-on-3D inference, 3D sliding window, TTA, post-processing, NIfTI.

* :class:`VolumeSliceInferer` - a MONAI ``Inferer`` running a 2D network over ``(B, C, H, W, D)``
  volumes (``resize``, ``sliding_window`` or the TransUNet ``transunet`` procedure);
* :class:`VolumeInferer` - 3D sliding window with flip TTA;
* :func:`keep_largest_component`, :func:`write_nifti`;
* :class:`PredictionSaver` - the handler that writes a MONAI evaluator's predictions as NIfTI (and, with
  ``probabilities=True``, each case's softmax as ``<case>.npz``: :func:`write_probabilities`);
* :func:`write_statistics` - a label map's volume (area) and connected components per class,
  ``<case>_statistics.json`` (:mod:`svseg.inference.statistics`).

The prediction loop itself is MONAI's ``SupervisedEvaluator``, built by each bundle's
``inference.json`` / ``evaluate.json``; this package supplies its inferer and its saver.
"""
from __future__ import annotations

from svseg.inference.inferers import (
    VolumeInferer,
    VolumeSliceInferer,
    argmax_channels,
    network_output,
    scipy_nearest_indices,
)
from svseg.inference.postprocessing import keep_largest_component
from svseg.inference.statistics import label_statistics, write_statistics
from svseg.inference.writer import PROBABILITY_DTYPES, PredictionSaver, reference_affine, write_nifti, write_probabilities

__all__ = [
    "PredictionSaver",
    "VolumeInferer",
    "VolumeSliceInferer",
    "argmax_channels",
    "keep_largest_component",
    "label_statistics",
    "network_output",
    "reference_affine",
    "scipy_nearest_indices",
    "write_nifti",
    "write_probabilities",
    "PROBABILITY_DTYPES",
    "write_statistics",
]
