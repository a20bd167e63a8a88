"""MONAI Label app that serves the svseg bundles for interactive annotation.

The app reads the bundles from a local folder (the repository's ``bundles/`` by default): nothing is
downloaded from the model zoo, so it works offline. Every bundle that has trained weights
(``<bundle>/models/model.pt`` or ``model.ts``) becomes

* one **infer task** named after the bundle: the 2D networks run slice by slice over the whole
  volume through the bundle's own ``inferer`` (``svseg.inference.VolumeSliceInferer``), so the client gets
  a 3D label volume of the image's shape and geometry;
* one **train task** (``<bundle>``) that fine-tunes the bundle on the studies annotated so far
  (MONAI Label's ``BundleTrainTask`` over the bundle's ``train.json``, run id ``run``).

Label names come from each bundle's ``metadata.json`` (``network_data_format.outputs.pred.channel_def``).

App configuration (``--conf key value`` of ``monailabel start_server``; ``python -m svseg.label start``
passes them for you):

``bundles_dir``
    folder holding the bundles (default: the ``bundles/`` folder of the svseg checkout).
``models``
    comma-separated bundle names to serve, or ``all`` (default).
``preload``
    ``true`` loads every network at start-up instead of at its first request.
``dataset_name``
    optional dataset whose class names and intensity rule replace the bundles' defaults (for
    weights trained with ``--dataset_name``), e.g. ``demo``.

Example::

    python -m svseg.label start --studies /data/studies          # binds 127.0.0.1:8000
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from monai.transforms import Activationsd, AsDiscreted, EnsureTyped
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.transform.pre import LoadImageTensord

from svseg import __version__
from svseg.bundle import bundles_root, class_names

logger = logging.getLogger(__name__)

__all__ = ["SvsegLabelApp", "SvsegBundleInferTask", "SvsegBundleTrainTask", "default_bundles_dir", "discover_bundles"]

NETWORK_BUNDLES = ("msa2net", "svanet", "afma", "sa2net", "msga")


def default_bundles_dir() -> Path:
    """The bundles folder of this svseg (the checkout's ``bundles/``, or the installed package's copy)."""
    return bundles_root()


def discover_bundles(bundles_dir: str | os.PathLike, names: str | None = "all") -> list[Path]:
    """Bundle folders under ``bundles_dir`` that have ``configs/metadata.json`` and ``configs/inference.json``.

    Args:
        bundles_dir: folder holding one sub-folder per bundle.
        names: ``"all"`` or a comma-separated list of bundle names; an unknown name raises ``ValueError``.
    """
    root = Path(bundles_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"bundles folder {root} does not exist")
    found = {
        p.name: p
        for p in sorted(root.iterdir())
        if (p / "configs" / "metadata.json").is_file() and (p / "configs" / "inference.json").is_file()
    }
    if names in (None, "", "all"):
        return list(found.values())
    wanted = [n.strip() for n in str(names).split(",") if n.strip()]
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ValueError(f"unknown bundle(s) {unknown} in {root}; available: {sorted(found)}")
    return [found[n] for n in wanted]


def _dataset_labels(dataset_name: str) -> dict[str, int]:
    return {str(n).lower(): i for i, n in enumerate(class_names(dataset_name)) if i > 0}


def _serving_overrides(config: dict, dataset_name: str | None, studies: str | None) -> dict:
    """Config overrides that make a bundle serve ``dataset_name`` (default: the bundle's own dataset).

    svseg bundles fall back to the demo data when ``data_root`` is empty; a served bundle works on the
    studies folder instead, so ``data_root`` points there and the class set is the chosen dataset's.
    """
    return {"dataset_name": dataset_name or config.get("dataset_name", "demo"), "data_root": studies or "."}


class SvsegBundleInferTask(BundleInferTask):
    """A MONAI Label infer task over an svseg bundle.

    Differences from MONAI Label's ``BundleInferTask``:

    * the task is 3D (``dimension = 3``) even for 2D networks, because the bundle's inferer
      (``VolumeSliceInferer``) runs them over every slice of the volume;
    * the bundle serves its own dataset's classes (those of ``metadata.json``), or those of
      ``dataset_name`` when given, and the network is built with that many output channels;
    * when the bundle's ``inference.json`` has no ``postprocessing``, softmax + argmax are applied so
      the client receives a label volume, not logits;
    * an unreadable image is reported as invalid input (HTTP 400), not as a server fault.
    """

    def __init__(self, path: str, conf: dict[str, str], dataset_name: str | None = None,
                 studies: str | None = None, **kwargs: Any):
        self._dataset_name = dataset_name
        self._studies = studies
        super().__init__(path, conf, **kwargs)
        if not self.valid:
            return
        self.dimension = 3
        served = self.bundle_config.config["dataset_name"]
        if dataset_name:
            self.labels = _dataset_labels(served)
        out_channels = self.bundle_config.get_parsed_content("num_classes") if "num_classes" in self.bundle_config.config else None
        if out_channels is not None and int(out_channels) != len(self.labels) + 1:
            raise ValueError(
                f"bundle {path}: metadata.json lists {len(self.labels)} labels + background but the network is built "
                f"with {out_channels} outputs for dataset {served!r}"
            )
        self.description = f"svseg bundle '{Path(path).name}' ({served} classes): {self.description or ''}"

    def _load_bundle_config(self, path: str, config: str):
        parser = super()._load_bundle_config(path, config)
        parser.config.update(_serving_overrides(parser.config, self._dataset_name, self._studies))
        return parser

    def __call__(self, request: dict, *args: Any, **kwargs: Any):
        image = request.get("image")
        if isinstance(image, str):
            _check_readable(image)
        return super().__call__(request, *args, **kwargs)

    def pre_transforms(self, data: Any = None) -> list:
        pre = list(super().pre_transforms(data))
        for t in pre:
            # svseg's loaders read image *and* label (label optional); a served request has only the image
            if isinstance(t, LoadImageTensord):
                t.keys = (self.key_image,)
        return pre

    def post_transforms(self, data: Any = None) -> list:
        post = list(super().post_transforms(data))
        if not any(k in self.bundle_config.config for k in self.const.key_postprocessing()):
            # Restored (appended by the base class) must stay last: insert before it
            head = [
                EnsureTyped(keys=self.key_pred, device="cpu"),
                Activationsd(keys=self.key_pred, softmax=True),
                AsDiscreted(keys=self.key_pred, argmax=True),
            ]
            post = head + post
        return post


def _check_readable(image: str) -> None:
    """Raise MONAI Label's INVALID_INPUT error when ``image`` is missing or cannot be read as an image."""
    from monai.transforms import LoadImage
    from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

    if not image or not os.path.exists(image):
        raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"image not found: {image!r}")
    if os.path.isdir(image):  # a DICOM series folder: let the loader deal with it
        return
    try:
        LoadImage(image_only=True)(image)
    except Exception as e:  # noqa: BLE001 - any reader failure means the file is not a usable image
        raise MONAILabelException(
            MONAILabelError.INVALID_INPUT, f"cannot read image {os.path.basename(image)}: {type(e).__name__}: {e}"
        ) from None


class SvsegBundleTrainTask(BundleTrainTask):
    """MONAI Label's bundle train task on an svseg bundle's ``train.json`` (run id ``run``)."""

    def __init__(self, path: str, conf: dict[str, str], dataset_name: str | None = None,
                 studies: str | None = None, **kwargs: Any):
        self._dataset_name = dataset_name
        self._studies = studies
        super().__init__(path, conf, **kwargs)

    def _load_bundle_config(self, path: str, config: str):
        parser = super()._load_bundle_config(path, config)
        parser.config.update(_serving_overrides(parser.config, self._dataset_name, self._studies))
        return parser

    def _update_overrides(self, overrides: dict) -> dict:
        overrides.update(_serving_overrides(self.bundle_config.config, self._dataset_name, self._studies))
        overrides.setdefault("output_dir", os.path.join(self.bundle_path, "runs", "monailabel"))
        return overrides


def _warn_not_served(path: Path) -> None:
    logger.warning(
        "bundle %s is not served: no trained weights at %s (train it, or copy model.pt there)",
        path.name,
        path / "models" / "model.pt",
    )


class SvsegLabelApp(MONAILabelApp):
    """MONAI Label app with one infer task and one train task per svseg bundle (see module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.bundles_dir = Path(conf.get("bundles_dir") or default_bundles_dir())
        self.bundle_paths = discover_bundles(self.bundles_dir, conf.get("models", "all"))
        self.dataset_name = conf.get("dataset_name") or None
        logger.info("svseg bundles in %s: %s", self.bundles_dir, [p.name for p in self.bundle_paths])
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="svseg",
            description="svseg attention networks (SvANet, MSA2Net, AFMA, SA2-Net, MSGA) served from local MONAI bundles",
            version=str(__version__),
        )

    def init_infers(self) -> dict[str, InferTask]:
        return self._bundle_tasks(SvsegBundleInferTask, on_invalid=_warn_not_served)

    def init_trainers(self) -> dict[str, TrainTask]:
        return self._bundle_tasks(SvsegBundleTrainTask)

    def _bundle_tasks(self, task_type: type, on_invalid: Callable[[Path], None] | None = None) -> dict[str, Any]:
        """One ``task_type`` task per bundle, by bundle name; a bundle whose task is not valid is left out
        (and passed to ``on_invalid``)."""
        tasks: dict[str, Any] = {}
        for path in self.bundle_paths:
            task = task_type(str(path), self.conf, dataset_name=self.dataset_name, studies=self.studies)
            if task.is_valid():
                tasks[path.name] = task
            elif on_invalid is not None:
                on_invalid(path)
        return tasks

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}


def bundle_labels(bundle_dir: str | os.PathLike) -> dict[str, int]:
    """Label names -> ids from a bundle's ``metadata.json`` (background excluded), as MONAI Label lists them."""
    meta = json.loads((Path(bundle_dir) / "configs" / "metadata.json").read_text())
    pred = next(iter(meta["network_data_format"]["outputs"].values()))
    return {v.lower(): int(k) for k, v in pred.get("channel_def", {}).items() if v.lower() != "background"}
