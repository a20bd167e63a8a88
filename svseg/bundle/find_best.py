"""``svseg find-best``: choose the best network, ensemble and post-processing from cross-validation.

nnU-Net's ``nnUNetv2_find_best_configuration`` for svseg's bundles. Every ``svseg train`` on a planned
data set folder leaves, per fold run, the softmax of the fold's validation cases
(``<run>/validation/<case>.npz``) and ``validation/predictions.json`` (:mod:`svseg.bundle.folds`).
:func:`find_best` reads all of them under a runs folder and, on the union of the validation cases of
the folds (every training case once, predicted by the fold that did not train on it), scores under
the data set's protocol (:func:`svseg.evaluation.evaluate_case`, :func:`svseg.evaluation.summarize`):

* each network (a bundle's fold runs: ``RUNS/<name>/fold_<k>``, or one ``--fold k`` run folder);
* each ensemble of two or more networks: the mean of their probabilities, then the argmax
  (as ``svseg predict`` with several models, :mod:`svseg.bundle.ensemble`);
* for each of those, keep-largest-connected-component post-processing per class
  (:func:`svseg.inference.keep_largest_component`, the function ``svseg predict --keep-largest`` runs):
  kept for a class when it raises that class's score (nnU-Net's per-class rule), then the whole
  configuration is scored again with the chosen classes.

It writes ``best.json`` (the ranking and the winner) and ``inference_instructions.txt`` (the exact
``svseg predict`` command of the winner), atomically, and returns the ranking table as text.
The score ranked is the protocol's headline number (:data:`RANKING_METRICS`).

It lives in the bundle stage, not in :mod:`svseg.evaluation`, because it joins the evaluation with the
inference stage's post-processing and probability files (an evaluation module may not import those).
MONAI's ``KeepLargestConnectedComponent`` is not used: on CPU it needs scikit-image, which svseg does not
depend on; svseg's scipy version has the same definition (full connectivity, each class on its own).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from svseg.bundle.folds import CV_MARKER, VALIDATION_DIR
from svseg.data import dataset_spec, load_plan, plan_datalist
from svseg.errors import InputError
from svseg.evaluation import evaluate_case, load_label_volume, summarize
from svseg.inference import keep_largest_component
from svseg.inference.writer import read_probabilities
from svseg.io import atomic_save_json, atomic_save_text
from svseg.runtime import progress_enabled

__all__ = ["RANKING_METRICS", "Network", "keep_largest_components", "find_cv_networks", "find_best",
           "format_ranking"]

logger = logging.getLogger(__name__)

#: protocol -> (the summary's overall key that is ranked, the per-class key that decides post-processing)
RANKING_METRICS = {
    "standard": ("dice", "dice"), "transunet": ("dice", "dice"), "uctransnet": ("dice", "dice"),
    "awesome_unet": ("dice", "dice"), "msga": ("dice", "dice"), "svanet": ("micro_dice", "dice"),
    "afma": ("mean_iou", "iou"),
}


def keep_largest_components(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """``labels`` with only the largest connected component of each class of ``classes`` kept, the rest
    background (:func:`svseg.inference.keep_largest_component`, as ``svseg predict --keep-largest``); no
    classes: ``labels`` unchanged."""
    return keep_largest_component(labels, classes=list(classes)) if len(classes) else labels


@dataclass
class Network:
    """One trained network of a runs folder: its bundle and its fold runs (``{fold: run folder}``)."""

    name: str
    bundle: str
    folder: Path
    folds: dict[int, Path] = field(default_factory=dict)
    class_names: list[str] | None = None


def find_cv_networks(runs_dir: str | os.PathLike, dataset: str | os.PathLike) -> list[Network]:
    """The networks under ``runs_dir`` with cross-validation predictions of ``dataset``, by name.

    A fold run ``<folder>/fold_<k>`` belongs to the network ``<folder>``; any other run folder is a network
    of its own. The name is the folder relative to ``runs_dir`` (the bundle's name for ``runs_dir`` itself).
    """
    root = Path(runs_dir).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {str(runs_dir)!r} does not exist.")
    wanted = Path(dataset).expanduser().absolute()
    networks: dict[Path, Network] = {}
    for marker in sorted(root.rglob(f"{VALIDATION_DIR}/{CV_MARKER}")):
        try:
            doc = json.loads(marker.read_text())
        except ValueError as e:
            raise InputError(marker, f"is not valid JSON ({e})") from e
        if Path(str(doc.get("dataset_name", ""))) != wanted:
            logger.info("%s: predictions of another data set (%s), not used", marker, doc.get("dataset_name"))
            continue
        run = marker.parent.parent
        fold = int(doc["fold"])
        folder = run.parent if run.name == f"fold_{fold}" else run
        name = str(folder.relative_to(root)) if folder != root else str(doc["bundle"])
        net = networks.setdefault(folder, Network(name=name, bundle=str(doc["bundle"]), folder=folder,
                                                  class_names=doc.get("class_names")))
        if net.bundle != doc["bundle"]:
            raise InputError(marker, f"is a {doc['bundle']} run inside the {net.bundle} runs of {folder}")
        if doc.get("class_names") is not None and net.class_names is not None and doc["class_names"] != net.class_names:
            raise InputError(marker, f"predicts classes {doc['class_names']}, the other folds of {name!r} "
                                     f"{net.class_names}")
        net.folds[fold] = run
    return sorted(networks.values(), key=lambda n: n.name)


def _cases(dataset: str, networks: list[Network], folds: Sequence[int]) -> list[tuple[str, str, int]]:
    """``(case, label file, fold)`` of every validation case of ``folds``, checked against each network's runs."""
    cases = []
    for k in folds:
        items = plan_datalist(dataset, "validation", k)
        wanted = sorted(i["case"] for i in items)
        for net in networks:
            marker = net.folds[k] / VALIDATION_DIR / CV_MARKER
            if sorted(json.loads(marker.read_text()).get("cases", [])) != wanted:
                raise InputError(marker, f"fold {k} was predicted on other validation cases than the plan of {dataset} "
                                         "has now (the data set changed): train that fold again")
        cases.extend((i["case"], i["label"], k) for i in items)
    return cases


def _configurations(networks: list[Network]) -> list[tuple[int, ...]]:
    n = len(networks)
    return [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]


def _score(summary: dict, key: str) -> float | None:
    v = summary.get("overall", {}).get(key)
    return None if v is None or not np.isfinite(float(v)) else float(v)


def _class_score(summary: dict, name: str, key: str) -> float | None:
    v = summary.get("classes", {}).get(name, {}).get(key)
    return None if v is None or not np.isfinite(float(v)) else float(v)


def _evaluate(dataset: str, networks: list[Network], cases: list[tuple[str, str, int]], configs: list[tuple[int, ...]],
              class_names: list[str], protocol: str, spacing_2d: Any, variants: dict[tuple[int, ...], list[list[int]]],
              desc: str) -> dict[tuple[tuple[int, ...], tuple[int, ...]], list[dict]]:
    """Rows of every (configuration, keep-largest classes) of ``variants`` over all ``cases``."""
    rows: dict[tuple[tuple[int, ...], tuple[int, ...]], list[dict]] = {
        (c, tuple(v)): [] for c in configs for v in variants[c]}
    for case, label, k in tqdm(cases, desc=desc, unit="case", disable=not progress_enabled()):
        ref, _, spacing = load_label_volume(label)
        spacing = spacing_2d if ref.ndim == 2 else spacing
        probs = []
        for net in networks:
            path = net.folds[k] / VALIDATION_DIR / f"{case}.npz"
            p, names = read_probabilities(path)
            if p.shape[1:] != ref.shape:
                raise InputError(path, f"has shape {p.shape[1:]}, the reference {Path(label).name} {ref.shape}")
            if p.shape[0] != len(class_names) or (names is not None and names != class_names):
                raise InputError(path, f"holds classes {names or p.shape[0]}, the data set {class_names}")
            probs.append(p)
        for c in configs:
            labels = np.argmax(sum(probs[i] for i in c) / len(c), axis=0).astype(np.uint8 if len(class_names) < 256
                                                                                 else np.int32)
            for v in variants[c]:
                rows[(c, tuple(v))].extend(evaluate_case(keep_largest_components(labels, v), ref, class_names,
                                                         spacing=spacing, protocol=protocol, case=case))
    return rows


def find_best(dataset: str | os.PathLike, runs_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
              folds: Sequence[int] | None = None, networks: Sequence[str] | None = None) -> dict:
    """Score every network, ensemble and keep-largest post-processing on the cross-validation predictions.

    Args:
        dataset: the planned data set folder the runs trained on.
        runs_dir: folder searched (recursively) for fold runs with ``validation/predictions.json``.
        output_dir: where ``best.json`` and ``inference_instructions.txt`` go (default ``runs_dir``).
        folds: the folds to use (default every fold of the plan); each network needs all of them.
        networks: only these network names (default all found).

    Returns:
        The ``best.json`` document; ``table`` holds the printed ranking.

    Raises:
        ValueError: a named data set (no folds), or no networks.
        svseg.errors.InputError: a network missing a fold, classes that differ from the data set's, a
            probability file that does not fit its reference, predictions of an outdated plan.
    """
    spec = dataset_spec(str(Path(dataset).expanduser().absolute()) if Path(dataset).expanduser().exists() else dataset)
    if not spec.root:
        raise ValueError(f"find-best needs a data set folder planned by `svseg plan` (it has folds); {dataset!r} is a "
                         "named data set with fixed splits")
    dataset = spec.root
    plan = load_plan(dataset)
    folds = list(range(len(plan["folds"]))) if folds is None else [int(k) for k in folds]
    found = find_cv_networks(runs_dir, dataset)
    if networks:
        unknown = sorted(set(networks) - {n.name for n in found})
        if unknown:
            raise ValueError(f"--networks {unknown} not found under {runs_dir} (found: {[n.name for n in found]}).")
        found = [n for n in found if n.name in set(networks)]
    if not found:
        raise FileNotFoundError(f"{runs_dir}: no cross-validation predictions of {dataset} (<run>/validation/"
                                f"{CV_MARKER}, written by svseg train on a planned data set).")
    class_names = [str(n) for n in spec.class_names]
    for net in found:
        missing = [k for k in folds if k not in net.folds]
        if missing:
            raise InputError(net.folder, f"fold(s) {', '.join(map(str, missing))} of network {net.name!r} missing (it "
                                         f"has {sorted(net.folds)}): train them (svseg train --bundle {net.bundle} "
                                         "--fold all ...) or choose folds with --folds")
        if net.class_names is not None and list(net.class_names) != class_names:
            raise InputError(net.folder, f"predicts classes {net.class_names}, the data set has {class_names}")
    protocol = spec.protocol or "standard"
    overall_key, class_key = RANKING_METRICS[protocol]
    cases = _cases(dataset, found, folds)
    configs = _configurations(found)
    foreground = list(range(1, len(class_names)))
    rows = _evaluate(dataset, found, cases, configs, class_names, protocol, spec.spacing_2d,
                     {c: [[], foreground] for c in configs}, "find-best")
    chosen: dict[tuple[int, ...], list[int]] = {}
    per_class: dict[tuple[int, ...], dict] = {}
    for c in configs:
        plain, pp = summarize(rows[(c, ())], protocol), summarize(rows[(c, tuple(foreground))], protocol)
        chosen[c], per_class[c] = [], {}
        for cid in foreground:
            a, b = _class_score(plain, class_names[cid], class_key), _class_score(pp, class_names[cid], class_key)
            per_class[c][class_names[cid]] = {"plain": a, "keep_largest": b}
            if a is not None and b is not None and b > a:
                chosen[c].append(cid)
    partial = {c: [chosen[c]] for c in configs if chosen[c] and chosen[c] != foreground}
    if partial:
        rows.update(_evaluate(dataset, found, cases, list(partial), class_names, protocol, spec.spacing_2d, partial,
                              "find-best (post-processing)"))
    ranking = []
    for c in configs:
        plain = _score(summarize(rows[(c, ())], protocol), overall_key)
        post = _score(summarize(rows[(c, tuple(chosen[c]))], protocol), overall_key) if chosen[c] else None
        use_pp = post is not None and (plain is None or post > plain)
        members = [found[i] for i in c]
        ranking.append({
            "configuration": " + ".join(n.name for n in members), "networks": [n.name for n in members],
            "bundles": [n.bundle for n in members], "runs": [str(n.folder) for n in members],
            "score": plain, "score_keep_largest": post, "final_score": post if use_pp else plain,
            "keep_largest": chosen[c] if use_pp else [],
            "keep_largest_names": [class_names[i] for i in chosen[c]] if use_pp else [],
            "per_class": per_class[c],
        })
    ranking.sort(key=lambda r: (-(r["final_score"] if r["final_score"] is not None else -np.inf),
                                len(r["networks"]), r["configuration"]))
    for i, r in enumerate(ranking, 1):
        r["rank"] = i
    best = ranking[0]
    best_nets = [next(n for n in found if n.name == name) for name in best["networks"]]
    command = _predict_command(best_nets, folds, len(plan["folds"]), best["keep_largest"])
    table = format_ranking(ranking, overall_key)
    doc = {"dataset": dataset, "protocol": protocol, "metric": overall_key, "folds": folds, "n_cases": len(cases),
           "best": {**best, "predict_command": command}, "ranking": ranking, "table": table}
    out = Path(output_dir).absolute() if output_dir is not None else Path(runs_dir).absolute()
    atomic_save_json(doc, out / "best.json")
    atomic_save_text(_instructions(doc), out / "inference_instructions.txt")
    return doc


def _predict_command(networks: list[Network], folds: list[int], n_folds: int, keep: list[int]) -> str:
    entries: list[tuple[str, str]] = []
    for net in networks:
        if sorted(folds) == list(range(n_folds)) and all(net.folds[k].parent == net.folder for k in folds):
            entries.append((net.bundle, str(net.folder)))  # a folder of fold runs stands for all of them
        else:
            entries.extend((net.bundle, str(net.folds[k] / "models" / "model.pt")) for k in folds)
    bundles = [b for b, _ in entries]
    words = ["svseg", "predict", "--bundle", *(bundles[:1] if len(set(bundles)) == 1 else bundles),
             "--checkpoint", *[p for _, p in entries], "--input", "INPUT_FOLDER", "--output", "OUTPUT_FOLDER"]
    if keep:
        words += ["--keep-largest", *map(str, keep)]
    return " ".join(w if w in ("INPUT_FOLDER", "OUTPUT_FOLDER") else shlex.quote(w) for w in words)


def _instructions(doc: dict) -> str:
    best = doc["best"]
    pp = (f"keep the largest connected component of: {', '.join(best['keep_largest_names'])} "
          f"(class ids {', '.join(map(str, best['keep_largest']))})" if best["keep_largest"] else "no post-processing")
    return (f"Best configuration for {doc['dataset']}\n"
            f"  {best['configuration']} ({len(best['networks'])} network(s)), {pp}\n"
            f"  {doc['metric']} {best['final_score']:.4f} under the {doc['protocol']} protocol, on the "
            f"{doc['n_cases']} validation cases of folds {', '.join(map(str, doc['folds']))}\n\n"
            f"Predict new images with:\n\n{best['predict_command']}\n")


def format_ranking(ranking: Sequence[dict], metric: str) -> str:
    """The ranking as a plain-text table: rank, configuration, score without and with the chosen
    keep-largest post-processing, and its classes."""
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    header = ("rank", "configuration", metric, f"{metric} keep-largest", "keep-largest classes")
    lines = [(str(r["rank"]), r["configuration"], num(r["score"]), num(r["score_keep_largest"]),
              ", ".join(r["keep_largest_names"]) or "-") for r in ranking]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rows = [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines]
    return "\n".join(row.rstrip() for row in rows)
