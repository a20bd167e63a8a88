"""Dataset rules of svseg: class names, label ids, intensity rules, layouts and official splits.

One :class:`DatasetSpec` per supported data set (``synapse``, ``lits``, ``acdc``, ``demo``).
Bundles and the CLI read every dataset-specific rule from here, so the configs stay short and the
same in every bundle (``--dataset_name synapse --data_root DIR``).

Sources of the published splits (see ``docs/datasets.md`` for the full discussion):

* **Synapse** (BTCV multi-organ CT, 30 labelled scans): the TransUNet split, 18 training and 12
  test cases, as listed in ``lists/lists_Synapse/{train.txt,test_vol.txt}`` of Beckschen/TransUNet
  (also shipped by xmindflow/MSA-2Net). No validation split exists in that protocol.
* **ACDC** (100 labelled cine-MRI patients): the 70 / 10 / 20 patient split of the preprocessed
  ACDC release of MT-UNet that CASCADE and SA2-Net use (``lists_ACDC/{train,valid,test}.txt``;
  checked against the copy in sotiraslab/AgileFormer, whose test and valid lists name the 20 and
  10 patients below and whose train list holds the remaining 70).
* **LiTS** (131 labelled CT volumes): AFMA publishes no volume split, so svseg fixes one: volumes
  0-103 training, 104-117 validation, 118-130 test (a contiguous, documented split; roughly
  80 / 10 / 10 %), or :func:`kfold_split` for cross-validation.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = [
    "DatasetSpec",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "kfold_split",
    "SYNAPSE_BTCV_TO_TRANSUNET",
    "BTCV_LABELS",
    "SVANET_BINS",
    "size_bin_labels",
    "size_bin",
]

#: SvANet's object-size thresholds, in % of the image (its tools/tinyObjectsValidation.py); used by the plan's
#: object-size table and by :mod:`svseg.evaluation.small_objects`
SVANET_BINS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 100.0)


def size_bin_labels(bins: Sequence[float] = SVANET_BINS) -> list[str]:
    """Labels of the disjoint size bins ``[0, b0)``, ``[b0, b1)``, ... ``[b_{n-2}, b_{n-1}]`` (percent)."""
    edges = [0.0] + [float(b) for b in bins]
    labels = []
    for i in range(len(bins)):
        close = "]" if i == len(bins) - 1 else ")"
        labels.append(f"[{edges[i]:g},{edges[i + 1]:g}{close}%")
    return labels


def size_bin(pct: float, bins: Sequence[float] = SVANET_BINS) -> int:
    """Index of the size bin of an object occupying ``pct`` % of its image (the last bin takes the rest)."""
    for i, b in enumerate(bins):
        if pct < b:
            return i
    return len(bins) - 1

#: The 13 BTCV labels of the raw Synapse multi-organ release (0 = background).
BTCV_LABELS: dict[int, str] = {
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior vena cava",
    10: "portal vein and splenic vein",
    11: "pancreas",
    12: "right adrenal gland",
    13: "left adrenal gland",
}

#: BTCV label id -> TransUNet label id (8 organs); every other BTCV label becomes background.
SYNAPSE_BTCV_TO_TRANSUNET: dict[int, int] = {8: 1, 4: 2, 3: 3, 2: 4, 6: 5, 11: 6, 1: 7, 7: 8}


@dataclass(frozen=True)
class DatasetSpec:
    """The rules of one data set.

    Attributes:
        name: registry key (``synapse``, ``lits``, ``acdc``, ``demo``).
        title: human-readable name.
        class_names: class names, index = label id, background first.
        modality: ``"CT"`` or ``"MR"``.
        intensity: the rule that maps raw scanner values to network input, e.g.
            ``{"rule": "ct_window", "a_min": -125, "a_max": 275}`` (clip, then scale to [0, 1]),
            ``{"rule": "minmax", "lower_percentile": 0.5, "upper_percentile": 99.5}`` (per volume)
            or ``{"rule": "zscore"}`` (per volume, non-zero voxels). svseg's converters apply it
            once when they write the prepared data (``prepared_range`` is then the value range
            on disk); :func:`svseg.data.transforms.intensity_transform` applies it to raw images.
        prepared_range: intensity range of the prepared data on disk.
        layout: on-disk layouts the converter writes / the readers accept.
        splits: official split -> tuple of case ids (``training``, ``validation``, ``test``).
        roi_size: default 2D input size of the networks.
        protocol: evaluation protocol the published numbers use (``transunet`` or ``standard``).
        default_network: the paper's network class for this data set (``svseg.networks``).
        default_bundle: the bundle folder name under ``bundles/``.
        slice_axis: the axis of the MONAI (H, W, D) array along which 2D slices are taken.
        source_labels: label ids of the raw release and what they become (empty if unchanged).
        reference: where the split / preprocessing comes from.
        notes: anything else a user must know.
        in_channels: image channels the networks take.
        spatial_dims: 3 for volumes (2D networks run on slices), 2 for 2D images.
        roi_sizes: bundle name -> 2D input size, for a planned data set (``svseg plan``); empty for
            the named ones (each bundle keeps its paper size).
        folds: a planned data set's folds, ``({"training": ids, "validation": ids}, ...)``.
        root: a planned data set's folder (empty for the named ones).
        spacing_2d: pixel spacing (row, column) of a 2D data set, when its ``dataset.json`` states one.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    modality: str
    intensity: Mapping[str, Any]
    prepared_range: tuple[float, float] = (0.0, 1.0)
    layout: Mapping[str, str] = field(default_factory=dict)
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    roi_size: tuple[int, int] = (224, 224)
    protocol: str = "standard"
    default_network: str = ""
    default_bundle: str = ""
    slice_axis: int = 2
    source_labels: Mapping[int, int] = field(default_factory=dict)
    reference: str = ""
    notes: str = ""
    in_channels: int = 1
    spatial_dims: int = 3
    roi_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    folds: tuple = ()
    root: str = ""
    spacing_2d: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        """Number of output channels (background included)."""
        return len(self.class_names)

    @property
    def label_ids(self) -> tuple[int, ...]:
        """All valid label ids (0 .. num_classes - 1)."""
        return tuple(range(self.num_classes))

    @property
    def foreground(self) -> tuple[str, ...]:
        """Class names without the background."""
        return self.class_names[1:]

    def split(self, name: str) -> tuple[str, ...]:
        """Case ids of one official split.

        Raises:
            ValueError: when ``name`` is not one of this data set's splits.
        """
        if name not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)} for dataset {self.name!r}, got {name!r}.")
        return self.splits[name]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the spec."""
        out = dataclasses.asdict(self)
        out["splits"] = {k: list(v) for k, v in self.splits.items()}
        out["source_labels"] = {str(k): v for k, v in self.source_labels.items()}
        out["num_classes"] = self.num_classes
        return out


def _synapse_case(i: int) -> str:
    return f"case{i:04d}"


def _acdc_case(i: int) -> str:
    return f"patient{i:03d}"


SYNAPSE_TRAIN = tuple(_synapse_case(i) for i in (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31, 33, 34, 37, 39, 40))
SYNAPSE_TEST = tuple(_synapse_case(i) for i in (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38))

ACDC_TEST = tuple(_acdc_case(i) for i in (2, 3, 8, 9, 12, 14, 17, 24, 42, 48, 49, 53, 55, 64, 67, 79, 81, 88, 92, 95))
ACDC_VALIDATION = tuple(_acdc_case(i) for i in (19, 21, 29, 33, 41, 50, 61, 71, 76, 80))
ACDC_TRAIN = tuple(
    _acdc_case(i) for i in range(1, 101) if _acdc_case(i) not in ACDC_TEST and _acdc_case(i) not in ACDC_VALIDATION
)

LITS_TRAIN = tuple(f"volume-{i}" for i in range(0, 104))
LITS_VALIDATION = tuple(f"volume-{i}" for i in range(104, 118))
LITS_TEST = tuple(f"volume-{i}" for i in range(118, 131))

_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add a :class:`DatasetSpec` to the registry (e.g. a user's own data set).

    Raises:
        ValueError: when the name is taken and ``overwrite`` is False, or the spec is invalid.
    """
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {spec.name!r} is already registered; pass overwrite=True to replace it.")
    if len(spec.class_names) < 2 or spec.class_names[0].lower() != "background":
        raise ValueError(f"class_names of {spec.name!r} must start with 'background' and name at least one class.")
    if spec.protocol not in ("transunet", "standard", "svanet", "uctransnet", "awesome_unet", "msga", "afma"):
        raise ValueError(f"protocol must be 'transunet' or 'standard', got {spec.protocol!r}.")
    if spec.modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', got {spec.modality!r}.")
    _REGISTRY[spec.name] = spec
    return spec


register_dataset(
    DatasetSpec(
        name="synapse",
        title="Synapse multi-organ CT (BTCV, TransUNet protocol)",
        class_names=(
            "background",
            "aorta",
            "gallbladder",
            "left kidney",
            "right kidney",
            "liver",
            "pancreas",
            "spleen",
            "stomach",
        ),
        modality="CT",
        intensity={"rule": "ct_window", "a_min": -125.0, "a_max": 275.0, "b_min": 0.0, "b_max": 1.0},
        layout={
            "raw": "img/imgXXXX.nii.gz + label/labelXXXX.nii.gz (BTCV RawData/Training, 13 labels)",
            "transunet": "train_npz/caseXXXX_sliceYYY.npz (image, label: 2D) + test_vol_h5/caseXXXX.npy.h5 "
            "(image, label: (D, H, W)) + lists/{train.txt,test_vol.txt}",
            "nifti": "imagesTr/caseXXXX.nii.gz, labelsTr/caseXXXX.nii.gz, imagesTs/, labelsTs/ + dataset.json",
        },
        splits={"training": SYNAPSE_TRAIN, "validation": (), "test": SYNAPSE_TEST},
        protocol="transunet",
        default_network="MSA2Net",
        default_bundle="msa2net",
        source_labels=SYNAPSE_BTCV_TO_TRANSUNET,
        reference="TransUNet (Chen et al. 2021) lists/lists_Synapse; label order as used by TransUNet-style papers "
        "(1 aorta ... 8 stomach, e.g. tljxyys/Perspective-Unet#4)",
        notes="HU clipped to [-125, 275] and scaled to [0, 1]; the TransUNet protocol has no validation split "
        "(the published numbers select models on the 12 test cases).",
    )
)

register_dataset(
    DatasetSpec(
        name="lits",
        title="LiTS liver and liver-tumour CT",
        class_names=("background", "liver", "tumour"),
        modality="CT",
        intensity={"rule": "ct_window", "a_min": -250.0, "a_max": 250.0, "b_min": 0.0, "b_max": 1.0},
        layout={
            "raw": "volume-N.nii + segmentation-N.nii (N = 0..130; labels 0 background, 1 liver, 2 tumour)",
            "nifti": "imagesTr/volume-N.nii.gz, labelsTr/volume-N.nii.gz, imagesTs/, labelsTs/ + dataset.json",
            "slices": "optional train_npz/volume-N_sliceYYY.npz cache",
        },
        splits={"training": LITS_TRAIN, "validation": LITS_VALIDATION, "test": LITS_TEST},
        protocol="standard",
        default_network="AFMA",
        default_bundle="afma",
        reference="AFMA (Sang et al.) window [-250, 250]; svseg's own fixed split (AFMA publishes none)",
        notes="AFMA clips HU to [-250, 250] without rescaling and trains on 512x512 crops; svseg also scales the "
        "window to [0, 1] and uses the common 224x224 default ROI (override roi_size for the paper's 512).",
    )
)

register_dataset(
    DatasetSpec(
        name="acdc",
        title="ACDC cardiac cine-MRI (ED and ES frames)",
        class_names=("background", "RV", "Myo", "LV"),
        modality="MR",
        intensity={"rule": "minmax", "lower_percentile": 0.5, "upper_percentile": 99.5, "b_min": 0.0, "b_max": 1.0},
        layout={
            "raw": "patientXXX/patientXXX_frameYY.nii.gz + patientXXX_frameYY_gt.nii.gz + Info.cfg (ED, ES)",
            "nifti": "imagesTr/patientXXX_ED.nii.gz (and _ES), labelsTr/..., imagesTs/, labelsTs/ + dataset.json",
            "transunet": "train_npz/patientXXX_ED_sliceYYY.npz + test_vol_h5/patientXXX_ED.npy.h5 + lists/",
        },
        splits={"training": ACDC_TRAIN, "validation": ACDC_VALIDATION, "test": ACDC_TEST},
        protocol="transunet",
        default_network="SA2Net",
        default_bundle="sa2net",
        reference="MT-UNet preprocessed ACDC lists (lists_ACDC/{train,valid,test}.txt) used by CASCADE and SA2-Net",
        notes="Each patient gives two volumes (ED and ES frames, from Info.cfg); a split holds both.",
    )
)

register_dataset(
    DatasetSpec(
        name="demo",
        title="svseg demonstration set (MNI152 2009a T1, nilearn)",
        class_names=("background", "grey matter", "white matter"),
        modality="MR",
        intensity={"rule": "minmax", "lower_percentile": 0.0, "upper_percentile": 99.5, "nonzero": True},
        layout={
            "nifti": "imagesTr/demo_trN.nii.gz, labelsTr/..., imagesTs/demo_tsN.nii.gz, labelsTs/ + dataset.json",
            "transunet": "train_npz/demo_trN_sliceYYY.npz + test_vol_h5/demo_{val,ts}N.npy.h5 + lists/",
        },
        splits={"training": ("demo_tr0", "demo_tr1", "demo_tr2", "demo_tr3"), "validation": ("demo_val0",), "test": ("demo_ts0", "demo_ts1")},
        protocol="standard",
        default_network="MSA2Net",
        default_bundle="msa2net",
        reference="svseg.data.demo (held-out axial slabs of one template brain)",
        notes="A demonstration set, not a benchmark.",
    )
)


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return sorted(_REGISTRY)


def get_dataset(name: str | DatasetSpec) -> DatasetSpec:
    """The :class:`DatasetSpec` of a data set (case-insensitive name; a spec passes through).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(name, DatasetSpec):
        return name
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset name {name!r}; known datasets: {', '.join(list_datasets())}.")
    return _REGISTRY[key]


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def kfold_split(cases: Sequence[str], n_folds: int = 5, fold: int = 0) -> dict[str, tuple[str, ...]]:
    """A deterministic k-fold split of ``cases`` (natural sort order, interleaved: case i goes to fold i % k).

    Returns:
        ``{"training": ..., "validation": ...}`` for the requested fold.

    Raises:
        ValueError: when ``n_folds`` < 2, ``fold`` is out of range or there are fewer cases than folds.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}.")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in [0, {n_folds - 1}], got {fold}.")
    ordered = sorted(cases, key=_natural_key)
    if len(ordered) < n_folds:
        raise ValueError(f"need at least n_folds={n_folds} cases, got {len(ordered)}.")
    val = tuple(c for i, c in enumerate(ordered) if i % n_folds == fold)
    train = tuple(c for i, c in enumerate(ordered) if i % n_folds != fold)
    return {"training": train, "validation": val}
