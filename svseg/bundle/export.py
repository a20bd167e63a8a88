"""Shareable models: a trained run as a self-contained MONAI bundle zip, TorchScript or ONNX file.

``svseg export`` (:func:`export_run`) turns the output folder of ``svseg train`` into

* ``bundle`` (default): a zip in the MONAI model-zoo layout, ``<name>/configs/{inference,metadata}.json``,
  ``configs/logging.conf``, ``models/model.pt`` (the weights, a bare state dict), ``models/svseg_model.json``,
  ``LICENSE``, ``docs/README.md`` (the training data and figures), ``docs/data_license.txt``. It runs
  anywhere svseg is installed with ``python -m monai.bundle run --config_file <name>/configs/inference.json
  --bundle_root <name> --input_dir IN --prediction_dir OUT``, and ``svseg predict --model NAME.zip``
  (:func:`predict_model`) uses it directly;
* ``torchscript``: a ``.ts`` file with the bundle's ``metadata.json`` and ``inference.json`` inside, as
  ``python -m monai.bundle ckpt_export`` writes it;
* ``onnx``: an ``.onnx`` file with a dynamic batch axis, input ``image``, output ``pred`` (logits).

MONAI does the conversions (``convert_to_torchscript``, ``convert_to_onnx``, ``save_net_with_metadata``: the
functions behind ``ckpt_export`` / ``onnx_export``; both trace the network at the model's input size) and
checks the metadata (``verify_metadata`` against the schema shipped with the bundles). What MONAI lacks is
kept here:

* baking a trained run's preprocessing (its ``svseg_model.json``: classes, channels, intensity rule, input
  size and normalisation, slice axis, 2D/3D, the training's network overrides) into the bundle's
  ``inference.json`` as literal values, so the zip runs without the data set it was trained on, and a
  ``metadata.json`` whose ``network_data_format`` describes the real inputs and outputs;
* the docs and the data licence note, written from the run's own files (:mod:`svseg.bundle.export_docs`);
* a parity check of every TorchScript/ONNX file after reloading it (``onnxruntime`` for ONNX) against the
  eager network on a fresh input with batch 2 (the inferer feeds slice batches): above
  :data:`PARITY_TOLERANCE` (max abs difference of the logits) the export is refused;
* reading a zip back (:func:`open_model`): one clear error for a zip that svseg did not export (a model-zoo
  bundle, a damaged file, unsafe member names), nothing extracted outside a temporary folder.

Every output is written to a temporary file next to it and renamed at the end (:func:`svseg.io.atomic_path`):
a failed or interrupted export leaves no partial file.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, verify_metadata
from monai.data import save_net_with_metadata
from monai.networks.utils import convert_to_onnx, convert_to_torchscript

from svseg import __version__
from svseg.bundle.export_docs import (EXPORT_KEY, bundle_metadata, data_license, dataset_facts, license_text, read_json,
                                     readme)
from svseg.bundle.model_info import MODEL_INFO_NAME, read_model_info
from svseg.bundle.run import bundle_dir, bundle_names, predict
from svseg.errors import InputError
from svseg.io import atomic_path, atomic_save_json, atomic_save_text

__all__ = ["EXPORT_KEY", "FORMATS", "PARITY_TOLERANCE", "bake_config", "export_network", "export_run",
           "exported_difference", "float64_errors", "open_model", "predict_model", "stage_bundle", "write_exported"]

logger = logging.getLogger(__name__)

FORMATS = ("bundle", "torchscript", "onnx")
PARITY_TOLERANCE = 1e-4
"""Largest accepted max abs difference between the eager network's logits and a reloaded TorchScript/ONNX file's."""
ONNX_OPSET = 18

_WEIGHTS = {"best": "model.pt", "final": "model_final.pt"}
# model-info keys that are bookkeeping, not config values of inference.json
_NOT_CONFIG = ("network", "svseg_version", "fold", "bundle_overrides")
# expressions of inference.json that may still name the data set after baking: they read only the input folder
# when input_dir is given (svseg.bundle.config.inputs_prepared / inference_datalist)
_DATASET_FREE = ("inputs_prepared", "dataset#data")
_STORED = (".pt", ".ts", ".onnx", ".png")  # already dense: stored, not deflated


# ----------------------------------------------------------------------------- export
def export_run(run: str | os.PathLike, output: str | os.PathLike, bundle: str | None = None, fmt: str = "bundle",
               weights: str = "best", overrides: Mapping[str, Any] | None = None,
               tolerance: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Export a trained run as a bundle zip, a TorchScript or an ONNX file (see the module docstring).

    Args:
        run: the output folder of ``svseg train`` (``models/model.pt`` and ``models/svseg_model.json``).
        output: the file to write (``.zip``, ``.ts`` or ``.onnx``); replaced atomically if it exists.
        bundle: the bundle the run trained (default: found from the network class its ``svseg_model.json``
            records); given, it must agree.
        fmt: ``bundle``, ``torchscript`` or ``onnx``.
        weights: ``best`` (``models/model.pt``, the best validation Dice) or ``final`` (``models/model_final.pt``).
        overrides: more inference config values to bake in (``{"network_def#features": 16}``), e.g. the network
            knobs a run was trained with when its ``svseg_model.json`` does not record them.
        tolerance: the largest max abs logit difference accepted between a TorchScript/ONNX file and the eager
            network (default :data:`PARITY_TOLERANCE`, 1e-4).

    Returns:
        ``{"path", "format", "bundle", "network"}``, plus ``max_abs_difference`` for TorchScript and ONNX.

    Raises:
        FileNotFoundError: no run folder.
        svseg.errors.InputError: a run without weights or without ``svseg_model.json``, weights of another
            bundle's network, weights that do not fit the exported network, a zip given as ``--run``.
        ValueError: unknown ``fmt``/``weights``; a TorchScript/ONNX file that differs from the eager network
            by more than ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if not tolerance >= 0:
        raise ValueError(f"--tolerance must be >= 0, got {tolerance}.")
    output = Path(output).expanduser().absolute()
    if output.is_dir():
        raise InputError(output, "is a folder; --output takes the file to write (e.g. model.zip)")
    with tempfile.TemporaryDirectory(prefix="svseg-export-") as tmp:
        staged = Path(tmp) / _bundle_folder_name(output)
        found = stage_bundle(run, staged, bundle=bundle, weights=weights, overrides=overrides)
        result: dict[str, Any] = {"path": output, "format": fmt, "bundle": found["bundle"], "network": found["network"]}
        if fmt == "bundle":
            _write_zip(staged, output)
        else:
            result["max_abs_difference"] = export_network(staged, output, fmt, tolerance=tolerance)
    logger.info("exported %s (%s, %s) to %s", found["bundle"], found["network"], fmt, output)
    return result


def stage_bundle(run: str | os.PathLike, dest: str | os.PathLike, bundle: str | None = None, weights: str = "best",
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the exported bundle folder of ``run`` into ``dest`` (a new folder); return its ``svseg_export`` entry.

    The weights are checked to load strictly into the network that the baked ``inference.json`` builds.
    """
    run = Path(run).expanduser().absolute()
    weights_file = _run_weights(run, weights)
    info = read_model_info(weights_file)
    if info is None:
        raise InputError(weights_file, f"has no {MODEL_INFO_NAME} beside it: only weights trained by svseg train carry "
                                       "the preprocessing a shared model needs")
    network = str(info.get("network", ""))
    bundle = _bundle_of(network, bundle, run)
    source = bundle_dir(bundle)
    config = json.loads((source / "configs" / "inference.json").read_text())
    unknown = [k for k in (overrides or {}) if k.split("#", 1)[0] not in config]
    if unknown:
        raise ValueError(f"--override {unknown[0]}: bundle {bundle!r}'s inference.json has no "
                         f"{unknown[0].split('#', 1)[0]!r}")
    values = {k: v for k, v in info.items() if k not in _NOT_CONFIG}
    values.update(info.get("bundle_overrides") or {})
    values.update(overrides or {})
    config = bake_config(config, values)

    dest = Path(dest)
    (dest / "configs").mkdir(parents=True)
    (dest / "models").mkdir()
    (dest / "docs").mkdir()
    state = _state_dict(weights_file)
    _check_weights_fit(config, state, weights_file, bundle)
    torch.save(state, dest / "models" / "model.pt")
    trained = {k: v for k, v in info.items() if k != "bundle_overrides"}
    baked_overrides = {**(info.get("bundle_overrides") or {}), **dict(overrides or {})}
    if baked_overrides:
        trained["bundle_overrides"] = baked_overrides
    atomic_save_json(trained, dest / "models" / MODEL_INFO_NAME)
    atomic_save_json(config, dest / "configs" / "inference.json", indent=4)
    shutil.copy2(source / "configs" / "logging.conf", dest / "configs" / "logging.conf")
    progress = read_json(run / "progress.json") or []
    summary = read_json(run / "summary.json")
    entry = {"bundle": bundle, "network": network, "run": run.name, "weights": _WEIGHTS[weights],
             "svseg_version": __version__, "trained_with_svseg": info.get("svseg_version"),
             "exported": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()}
    dataset = dataset_facts(info)
    meta = bundle_metadata(json.loads((source / "configs" / "metadata.json").read_text()), info, dataset, entry,
                           progress, summary)
    atomic_save_json(meta, dest / "configs" / "metadata.json", indent=4)
    _verify_metadata(dest / "configs" / "metadata.json", source.parent)
    figures = [name for name in ("progress.png", "boxplot.png") if (run / name).is_file()]
    for name in figures:
        shutil.copy2(run / name, dest / "docs" / name)
    atomic_save_text(license_text(), dest / "LICENSE")
    atomic_save_text(data_license(info, dataset), dest / "docs" / "data_license.txt")
    atomic_save_text(readme(meta, info, dataset, entry, progress, summary, figures, dest.name),
                     dest / "docs" / "README.md")
    return entry


def bake_config(config: dict, values: Mapping[str, Any]) -> dict:
    """``inference.json`` with the trained model's values as literals, ready to run without its data set.

    Every ``values`` id that the config has (``num_classes``, ``roi_size``, ``intensity_rule``, ...; ids with
    ``#`` set nested entries) is replaced; paths point into the bundle (``models/model.pt``, outputs under
    ``eval/``); a network's ``pretrained`` is switched off (the trained weights are loaded).

    Raises:
        ValueError: an expression that still depends on the data set (a new data-set key that the model's
            ``svseg_model.json`` does not record), so the exported bundle would need the data set.
    """
    parser = ConfigParser(json.loads(json.dumps(config)))
    for key, value in values.items():
        if key == "prepared_range":
            value = _range_literal(value)
        if key in parser.config or "#" in key:
            parser[key] = value
    parser["bundle_root"] = "."
    parser["output_dir"] = "$os.path.join(@bundle_root, 'eval')"
    parser["ckpt_dir"] = "$os.path.join(@bundle_root, 'models')"
    parser["data_root"] = None
    if "pretrained" in parser.config:
        parser["pretrained"] = False
    if "pretrained" in parser["network_def"] and not str(parser["network_def#pretrained"]).startswith("@"):
        parser["network_def#pretrained"] = False
    left = [i for i, v in _walk(parser.config) if isinstance(v, str) and "@dataset_name" in v and i not in _DATASET_FREE]
    if left:
        raise ValueError(f"inference.json: {', '.join(left)} still depend(s) on the data set after baking in the "
                         f"model's {MODEL_INFO_NAME}; the exported bundle would need the data set")
    return parser.config


# ----------------------------------------------------------------------------- TorchScript / ONNX
def export_network(bundle_folder: str | os.PathLike, output: str | os.PathLike, fmt: str,
                   tolerance: float = PARITY_TOLERANCE) -> float:
    """Convert the network of an exported bundle folder to TorchScript or ONNX at ``output``; return the parity.

    The network is built from the folder's ``configs/inference.json`` and ``models/model.pt`` (as
    ``monai.bundle ckpt_export`` does), traced at ``(1, in_channels, *roi_size)``, written, reloaded and compared
    (:func:`exported_difference`). The file is renamed into place only when the difference is within
    ``tolerance``; otherwise the refusal says how far the file and the eager float32 network each are from a
    float64 run of the network (:func:`float64_errors`), so float32 rounding can be told from a wrong export.
    """
    folder = Path(bundle_folder)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    parser["bundle_root"] = str(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "configs run code" notice: the config is ours
        network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(folder / "models" / "model.pt", map_location="cpu", weights_only=True))
    roi = [int(v) for v in parser.get_parsed_content("roi_size")]
    shape = (1, int(parser.get_parsed_content("in_channels")), *roi)
    extra = {"metadata.json": json.dumps(parser.get("_meta_")),
             "inference.json": (folder / "configs" / "inference.json").read_text()}
    with atomic_path(output) as tmp:
        difference = write_exported(network, tmp, fmt, shape, extra_files=extra)
        if not difference <= tolerance:
            exported, eager = float64_errors(network, tmp, fmt, shape)
            raise ValueError(f"{Path(output).name}: the {fmt} export differs from the eager network by {difference:.3g} "
                             f"(max abs logit difference; at most {tolerance:g} accepted: --tolerance), nothing written; "
                             f"against a float64 run of the network the export is off by {exported:.3g}, the eager "
                             f"float32 network by {eager:.3g}")
    return difference


def write_exported(network: torch.nn.Module, path: str | os.PathLike, fmt: str, input_shape: tuple[int, ...],
                   extra_files: Mapping[str, str] | None = None, seed: int = 0) -> float:
    """Trace ``network`` at ``input_shape`` into a TorchScript (``fmt="torchscript"``) or ONNX file at ``path``,
    reload it and return :func:`exported_difference`. ``extra_files`` (name -> text) go inside a TorchScript file."""
    network = network.eval().cpu()
    example = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        # torch's tracer warns about every shape check it freezes: the export is for this input size only
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            scripted = convert_to_torchscript(network, use_trace=True, inputs=[example])
            save_net_with_metadata(scripted, str(path), include_config_vals=False, append_timestamp=False,
                                   more_extra_files={k: v.encode() for k, v in (extra_files or {}).items()})
        elif fmt == "onnx":
            # dynamo=False: the TorchScript-based exporter (trace), like ckpt_export; a dynamic batch axis
            convert_to_onnx(network, inputs=[example], filename=str(path), input_names=["image"], output_names=["pred"],
                            opset_version=ONNX_OPSET, dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}},
                            use_trace=True, dynamo=False)
        else:
            raise ValueError(f"fmt must be 'torchscript' or 'onnx', got {fmt!r}.")
    return exported_difference(network, path, fmt, input_shape, seed=seed + 1)


def exported_difference(network: torch.nn.Module, path: str | os.PathLike, fmt: str, input_shape: tuple[int, ...],
                        seed: int = 1, batch: int = 2) -> float:
    """Max abs difference between ``network``'s logits and those of the reloaded TorchScript/ONNX file at ``path``,
    on a fresh normal input of ``input_shape`` with ``batch`` items (not the tracing input: a traced constant
    would show)."""
    x = torch.randn((batch, *input_shape[1:]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = network.eval().cpu()(x)
    got = _run_exported(path, fmt, x)
    if got.shape != expected.shape:
        raise ValueError(f"{Path(path).name}: the {fmt} export gives shape {tuple(got.shape)}, the network "
                         f"{tuple(expected.shape)}")
    return float((got.float() - expected.float()).abs().max())


def float64_errors(network: torch.nn.Module, path: str | os.PathLike, fmt: str, input_shape: tuple[int, ...],
                   seed: int = 1, batch: int = 2) -> tuple[float, float]:
    """Max abs errors of the exported file and of the eager float32 network against the same network run in
    float64 (a copy), on :func:`exported_difference`'s input: which of the two float32 results is off."""
    import copy

    x = torch.randn((batch, *input_shape[1:]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        eager = network.eval().cpu()(x).double()
        exact = copy.deepcopy(network).double()(x.double())
    got = _run_exported(path, fmt, x).double()
    return float((got - exact).abs().max()), float((eager - exact).abs().max())


def _run_exported(path: str | os.PathLike, fmt: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()(x)
    import onnxruntime  # the test extra: pip install 'svseg[test]'

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


# ----------------------------------------------------------------------------- reading a zip back
@contextlib.contextmanager
def open_model(model: str | os.PathLike, bundle: str | None = None) -> Iterator[tuple[Path, Path]]:
    """Unpack a zip written by :func:`export_run` into a temporary folder; yield ``(bundle folder, weights)``.

    The folder is removed when the block ends.

    Raises:
        FileNotFoundError: no such file.
        svseg.errors.InputError: not a zip, a zip that svseg did not export (e.g. a model-zoo bundle), a damaged
            zip, a member name that leaves the folder, or a ``bundle`` other than the one the zip holds.
    """
    path = Path(model).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"--model {str(model)!r} does not exist.")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "is not a zip file; --model takes a zip written by svseg export")
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        unsafe = [n for n in names if n.startswith(("/", "\\")) or ".." in Path(n).parts or ":" in n]
        if unsafe:
            raise InputError(path, f"has a member outside its folder ({unsafe[0]!r}); refused")
        tops = {n.split("/", 1)[0] for n in names}
        top = tops.pop() if len(tops) == 1 else None
        needed = [f"{top}/{p}" for p in ("configs/inference.json", "configs/metadata.json", "models/model.pt",
                                         f"models/{MODEL_INFO_NAME}")]
        meta = _zip_json(z, needed[1]) if top is not None and needed[1] in names else {}
        if top is None or not isinstance(meta.get(EXPORT_KEY), dict) or any(n not in names for n in needed):
            raise InputError(path, "is not a model exported by svseg export (it needs one top folder with "
                                   f"configs/inference.json, configs/metadata.json with an {EXPORT_KEY!r} entry, "
                                   f"models/model.pt and models/{MODEL_INFO_NAME}); another MONAI bundle runs with "
                                   "python -m monai.bundle run")
        held = str(meta[EXPORT_KEY].get("bundle"))
        if bundle is not None and Path(str(bundle)).name != held:
            raise InputError(path, f"holds a {held} model ({meta[EXPORT_KEY].get('network')}), not bundle {bundle!r}")
        damaged = z.testzip()
        if damaged is not None:
            raise InputError(path, f"is damaged: {damaged} fails its CRC check")
        with tempfile.TemporaryDirectory(prefix="svseg-model-") as tmp:
            z.extractall(tmp)
            folder = Path(tmp) / top
            yield folder, folder / "models" / "model.pt"


def predict_model(model: str | os.PathLike, input_path: str | os.PathLike, output_dir: str | os.PathLike,
                  bundle: str | None = None, **predict_kwargs: Any) -> list[Path]:
    """:func:`svseg.bundle.predict` with an exported zip (``svseg predict --model NAME.zip``): its own configs and
    weights, unpacked into a temporary folder. ``predict_kwargs`` go to ``predict`` (``device``, ``overrides``...);
    ``checkpoint`` is refused (the zip holds the weights). Errors as :func:`open_model`; nothing is written then."""
    if predict_kwargs.get("checkpoint") is not None:
        raise ValueError("--checkpoint and --model exclude each other: the zip holds the weights.")
    predict_kwargs.pop("checkpoint", None)
    with open_model(model, bundle=bundle) as (folder, weights):
        return predict(str(folder), input_path, output_dir, checkpoint=weights, **predict_kwargs)


# ----------------------------------------------------------------------------- helpers
def _bundle_folder_name(output: Path) -> str:
    stem = output.name[: -len("".join(output.suffixes))] if output.suffixes else output.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"


def _run_weights(run: Path, weights: str) -> Path:
    if weights not in _WEIGHTS:
        raise ValueError(f"--weights must be 'best' or 'final', got {weights!r}.")
    if not run.exists():
        raise FileNotFoundError(f"--run {str(run)!r} does not exist.")
    if run.is_file():
        what = "a zip (an exported model, not a training run)" if zipfile.is_zipfile(run) else "a file"
        raise InputError(run, f"is {what}; --run takes the output folder of svseg train (it holds models/model.pt)")
    candidates = [run / "models" / _WEIGHTS[weights], run / _WEIGHTS[weights]]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        other = "final" if weights == "best" else "best"
        hint = (f"; --weights {other} exports models/{_WEIGHTS[other]}, which it has"
                if any((c.parent / _WEIGHTS[other]).is_file() for c in candidates) else "")
        raise InputError(run, f"holds no trained weights (models/{_WEIGHTS[weights]}){hint}")
    return found


def _bundle_of(network: str, bundle: str | None, run: Path) -> str:
    """The bundle whose network the run trained; ``bundle``, when given, must be it."""
    networks = {name: _network_of(bundle_dir(name)) for name in bundle_names()}
    owners = [name for name, net in networks.items() if net == network]
    if bundle is not None:
        expected = networks.get(str(bundle)) or _network_of(bundle_dir(bundle))
        if network and network != expected:
            held = f" (bundle {owners[0]})" if owners else ""
            raise InputError(run, f"holds {network} weights{held}, not {expected} weights of bundle {bundle!r}")
        return str(bundle)
    if not owners:
        raise InputError(run, f"holds {network or 'unnamed'} weights, which no svseg bundle builds; name one with --bundle")
    return owners[0]


def _network_of(folder: Path) -> str:
    return str(json.loads((folder / "configs" / "inference.json").read_text())["network_def"]["_target_"]).rsplit(".", 1)[-1]


def _state_dict(weights_file: Path) -> dict:
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    for key in ("network", "model", "state_dict"):  # an svseg checkpoint_*.pt or another wrapped save
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(weights_file, "is not a state dict of a network")
    return state


def _check_weights_fit(config: dict, state: dict, weights_file: Path, bundle: str) -> None:
    parser = ConfigParser(json.loads(json.dumps(config)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = parser.get_parsed_content("network_def")
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        first = (missing or unexpected or shapes)[0]
        raise InputError(weights_file, f"does not fit the {type(network).__name__} that bundle {bundle!r} builds with the "
                                       f"run's svseg_model.json ({len(missing)} missing, {len(unexpected)} unexpected, "
                                       f"{len(shapes)} differently shaped parameters, e.g. {first}); pass the network "
                                       "overrides the run was trained with, e.g. --override network_def#features=16")


def _range_literal(value: Any) -> Any:
    lo, hi = (float(v) for v in value)
    if math.isfinite(lo) and math.isfinite(hi):
        return [lo, hi]
    return f"$[float('{lo}'), float('{hi}')]"


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        ident = f"{prefix}#{key}" if prefix else str(key)
        yield ident, value
        yield from _walk(value, ident)


def _zip_json(z: zipfile.ZipFile, name: str) -> dict:
    try:
        data = json.loads(z.read(name))
    except (ValueError, zipfile.BadZipFile, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _verify_metadata(meta_file: Path, bundles: Path) -> None:
    schema = bundles / Path(str(json.loads(meta_file.read_text()).get("schema", ""))).name
    if not schema.is_file():
        logger.warning("no local copy of the metadata schema at %s: metadata.json is not verified", schema)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No hash value provided")  # the schema is the local, shipped copy
        verify_metadata(meta_file=str(meta_file), filepath=str(schema))


def _write_zip(folder: Path, output: Path) -> None:
    with atomic_path(output, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w") as z:
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                arcname = f"{folder.name}/{f.relative_to(folder).as_posix()}"
                z.write(f, arcname, compress_type=zipfile.ZIP_STORED if f.suffix in _STORED else zipfile.ZIP_DEFLATED)
