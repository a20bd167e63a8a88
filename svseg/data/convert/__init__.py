"""Converters from the published downloads of Synapse (BTCV), LiTS and ACDC to svseg's layouts.

One call makes a download trainable, with the published split::

    from svseg.data import prepare
    prepare("synapse", "/data/BTCV/RawData/Training", "/data/svseg/synapse")
    prepare("lits", "/data/LiTS", "/data/svseg/lits", window=(-250, 250))
    prepare("acdc", "/data/ACDC/database/training", "/data/svseg/acdc")
    prepare("demo")                      # the offline demonstration set

(also ``python -m data_prep.<dataset>`` and ``svseg prepare <dataset>``). What each writes:

* NIfTI volumes (``imagesTr/``, ``labelsTr/`` for training and validation cases, ``imagesTs/``,
  ``labelsTs/`` for test cases) with the **original affine and spacing**, intensities already
  normalised by the data set's rule and labels remapped to the svseg label ids, plus a
  Decathlon-style ``dataset.json`` (``training`` / ``validation`` / ``test``).
* The TransUNet layout where the papers use it (Synapse, ACDC; LiTS with ``slices=True``):
  ``train_npz/<case>_sliceNNN.npz`` (2D ``image``/``label``, float32, (H, W) = (y, x)) for
  training cases, ``test_vol_h5/<case>.npy.h5`` ((D, H, W) = (z, y, x) ``image``/``label`` with
  ``affine`` and ``spacing`` attributes, so HD95 can be reported in mm) for validation and test
  cases, and ``lists/{train.txt,val_vol.txt,test_vol.txt}``.
* ``svseg_prepare.json``: the data set, the options and the converted cases.

Every input is checked before anything is written for it, and each problem raises an error that
names the file: a missing file (``FileNotFoundError``), a corrupt gzip or truncated H5, a 2D file
where a volume is expected, image/label shape or affine mismatch, label ids outside the data
set's set, NaN/Inf intensities, an empty label volume (:class:`ConversionError`, a
``ValueError``). The output tree is built in a temporary folder and renamed at the end, so a
failed conversion leaves no output behind.

Modules: :mod:`~svseg.data.convert.common` (input checks, output folder, case selection, the final
``dataset.json`` and stamp; the files themselves are written by :class:`svseg.data.layout.LayoutWriter`),
one module per data set (:mod:`~svseg.data.convert.synapse`, :mod:`~svseg.data.convert.lits`,
:mod:`~svseg.data.convert.acdc`), and :func:`prepare` here.

The five papers' published layouts are converted into svseg's own format, the nnU-Net v2 raw layout with the
paper's split in ``splits_final.json`` and its evaluation protocol in ``dataset.json``
(:mod:`~svseg.data.convert.paper_common`): ``svanet`` (SvANet's ``dataset/<Set>``), ``uctransnet``
(UCTransNet / SA2-Net MoNuSeg and GlaS), ``awesome_unet`` (Awesome-U-Net ISIC 2018), ``msga`` (MSGA's CHAOS
slices, re-stacked per subject) and ``afma`` (AFMA's LiTS ``.npy`` slices)::

    prepare("uctransnet", "/data/MoNuSeg", "/data/svseg/monuseg")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from svseg.data.convert.acdc import convert_acdc, read_acdc_info
from svseg.data.convert.afma_lits import convert_afma_lits
from svseg.data.convert.awesome_unet import convert_awesome_unet
from svseg.data.convert.common import (
    CONVERTER_VERSION,
    STAMP_NAME,
    ConversionError,
    check_pair,
    default_output_dir,
    load_volume,
)
from svseg.data.convert.lits import convert_lits
from svseg.data.convert.msga import convert_msga
from svseg.data.convert.paper_common import LAYOUTS, identify_layout
from svseg.data.convert.svanet import convert_svanet
from svseg.data.convert.synapse import convert_synapse, validate_transunet_folder
from svseg.data.convert.uctransnet import convert_uctransnet
from svseg.data.demo import prepare_demo
from svseg.data.nuclei import prepare_nuclei

__all__ = [
    "CONVERTER_VERSION",
    "STAMP_NAME",
    "ConversionError",
    "prepare",
    "convert_synapse",
    "convert_lits",
    "convert_acdc",
    "convert_svanet",
    "convert_uctransnet",
    "convert_awesome_unet",
    "convert_msga",
    "convert_afma_lits",
    "LAYOUTS",
    "identify_layout",
    "CONVERTERS",
    "validate_transunet_folder",
    "load_volume",
    "check_pair",
    "read_acdc_info",
    "default_output_dir",
]


#: the converters behind ``prepare(name, ...)``: the named data sets' downloads and the papers' layouts
CONVERTERS = {
    "synapse": convert_synapse, "lits": convert_lits, "acdc": convert_acdc,
    "svanet": convert_svanet, "uctransnet": convert_uctransnet, "awesome_unet": convert_awesome_unet,
    "msga": convert_msga, "afma": convert_afma_lits,
}


def prepare(name: str, source: str | os.PathLike | None = None, output: str | os.PathLike | None = None, **opts: Any) -> Path:
    """Make a data set trainable: convert a download (or build the demo) and return the folder.

    Args:
        name: ``synapse``, ``lits``, ``acdc``, ``demo``, ``nuclei`` (:func:`svseg.data.nuclei.prepare_nuclei`:
            the stardist wheel's real DSB2018 nuclei as an nnU-Net raw folder), or a paper's layout: ``svanet``, ``uctransnet``,
            ``awesome_unet``, ``msga``, ``afma``.
        source: the downloaded release (not used for ``demo``).
        output: destination folder (default ``$SVSEG_DATA_DIR/<name>``).
        opts: options of the converter (:func:`convert_synapse`, :func:`convert_lits`,
            :func:`convert_acdc`, :func:`convert_svanet`, :func:`convert_uctransnet`, :func:`convert_awesome_unet`,
            :func:`convert_msga`, :func:`convert_afma_lits`, :func:`svseg.data.demo.prepare_demo`), e.g.
            ``overwrite=True``.

    Raises:
        ValueError: unknown name, or no ``source`` for a data set that needs one.
    """
    key = str(name).strip().lower()
    if key == "demo":
        if "overwrite" in opts:
            opts["force"] = opts.pop("overwrite")
        opts.pop("progress", None)
        return prepare_demo(output, **opts)
    if key == "nuclei":  # the real nuclei sample of the stardist wheel (source: optional, img2d.tif + mask2d.tif)
        if "overwrite" in opts:
            opts["force"] = opts.pop("overwrite")
        return prepare_nuclei(output, source=source, **opts)
    if key not in CONVERTERS:
        raise ValueError(f"unknown dataset name {name!r}; prepare() knows {sorted(CONVERTERS) + ['demo', 'nuclei']}.")
    if source is None:
        raise ValueError(f"source is required for dataset {key!r}: the folder of the downloaded release.")
    return CONVERTERS[key](source, output, **opts)
