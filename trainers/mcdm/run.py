"""MCDM training runs: several (store, manifest) corpora to a run folder with provenance and results.

``train_mcdm(name, corpora, out_dir)`` trains a registered MCDM model (``mcdm``, ``mcdm-1``) on the
concatenated train splits with the loop of :mod:`affectcache.trainers.loop` and writes, as the VA runs do::

    run.json            format, model, config, seed, libraries, per corpus: store, manifest digest, input
                        identities and a hash of its task labels; parameter count, fit summary, results
    config.yaml         the config (``affectcache train mcdm --config run/config.yaml`` reproduces it)
    metrics.csv/.jsonl  per epoch: loss, lr, dev figures, mean_all, GradNorm weights (from the loop)
    best.pt, last.pt    checkpoints (GradNorm's wallets are in last.pt)
    results.json        dev figures; test figures with bootstrap CIs; MELD zero-shot (when given)
    results.md / .csv   one row in the shape of the paper's Table 1
    plots/meld_confusion.png   MELD zero-shot confusion matrix (with the ``plots`` extra)

Training again into the same folder resumes when the config and every corpus's inputs are unchanged;
changed inputs are refused (:class:`~affectcache.store.errors.ProvenanceMismatchError`), another config
too (:class:`~affectcache.extractors.core.errors.ConfigError`), unless ``overwrite``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.atomic import atomic_write_json, atomic_write_text
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.provenance import library_versions, utc_now
from affectcache.store.errors import StoreError
from affectcache.store.manifest import manifest_digest
from affectcache.trainers.mcdm.config import MCDMTrainConfig
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.provenance import modality_identity, prepare_run_dir

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.mcdm.data import ClipCorpus, ClipDataset

logger = logging.getLogger(__name__)

RUN_FORMAT = "affectcache-mcdm-run/1"
MODALITY_LETTERS = {"face": "V", "audio": "A", "text": "T", "behaviour": "B"}
"""Table 1's letters of the inputs."""
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("MOSEI mMF1", "mosei_mmf1"), ("MOSEI mWACC", "mosei_mwacc"), ("FIv2 mACC", "fiv2_macc"),
    ("FIv2 mCCC", "fiv2_mccc"), ("BAH MF1", "bah_mf1"), ("BAH UAR", "bah_uar"), ("MELD MF1", "meld_mf1"),
    ("MELD WF1", "meld_wf1"))
"""Table 1's figure columns (percent) and their result keys."""

Corpus = tuple["FeatureStore", "Manifest"]


@dataclass(frozen=True, kw_only=True)
class MCDMRun:
    """A trained run."""

    run_dir: Path
    """The run folder."""
    record: dict[str, Any]
    """Content of run.json."""


def load_corpora(corpora: Sequence[Corpus], config: MCDMTrainConfig) -> list[ClipCorpus]:
    """Each (store, manifest) pair as clip vectors of the config's enabled inputs and task labels."""
    from affectcache.trainers.mcdm.data import load_clip_corpus

    sources = dict(zip(config.modalities, config.sources, strict=True))
    wanted = {m: sources[m] for m in config.enabled_modalities}
    return [load_clip_corpus(store, manifest, {m: s for m, s in wanted.items() if store.has_modality(s)})
            for store, manifest in corpora]


def corpus_inputs(corpora: Sequence[Corpus], loaded: Sequence[ClipCorpus]) -> dict[str, Any]:
    """What the run's numbers depend on: per corpus, its inputs' identities and a hash of its labels."""
    inputs: dict[str, Any] = {}
    for i, ((store, manifest), corpus) in enumerate(zip(corpora, loaded, strict=True)):
        digest = hashlib.sha256()
        for part in (corpus.labels.emotion, corpus.labels.personality, corpus.labels.ah):
            digest.update(np.ascontiguousarray(part, np.float32).tobytes())
        digest.update("\n".join(f"{v}\t{s}" for v, s in zip(corpus.video_ids, corpus.splits, strict=True)
                                ).encode())
        inputs[f"{i}:{corpus.name}"] = {
            "modalities": {v.modality: modality_identity(store, v.modality)
                           for v in corpus.features.values()},
            "labels_sha256": digest.hexdigest(), "manifest": manifest_digest(manifest)}
    return inputs


def train_mcdm(name: str, corpora: Sequence[Corpus], out_dir: str | Path, *,
               config: MCDMTrainConfig | None = None, meld: Corpus | None = None, overwrite: bool = False,
               progress: bool = False) -> MCDMRun:
    """Train the registered MCDM model ``name`` on ``corpora`` into ``out_dir`` (see the module docstring).

    Raises:
        ProvenanceMismatchError: ``out_dir`` holds a run trained on other inputs (and not ``overwrite``).
        ConfigError: ``out_dir`` holds a run with another config or model (and not ``overwrite``).
        StoreError: No corpus, an empty split, or no finite dev score.
    """
    from affectcache.trainers.loop import fit, seed_everything
    from affectcache.trainers.mcdm.data import ClipDataset
    from affectcache.trainers.mcdm.model import count_parameters
    from affectcache.trainers.mcdm.task import MultitaskTask

    spec = get_model_spec(name)
    config = config if config is not None else spec.config_type()  # type: ignore[assignment]
    if not isinstance(config, MCDMTrainConfig):
        raise ConfigError(f"{name} needs an MCDMTrainConfig, got {type(config).__name__}")
    if not corpora:
        raise StoreError("train mcdm needs at least one (store, manifest) corpus")
    run_dir = Path(out_dir)
    loaded = load_corpora(corpora, config)
    inputs = corpus_inputs(corpora, loaded)
    prepare_run_dir(run_dir, name, config.to_dict(), inputs, overwrite=overwrite)
    record: dict[str, Any] = {
        "format": RUN_FORMAT, "model": name, "config": config.to_dict(), "seed": config.seed,
        "created": utc_now(), "stores": [store.url for store, _ in corpora], "inputs": inputs,
        "libraries": library_versions(("scikit-learn", "matplotlib")), "status": "training"}
    atomic_write_json(run_dir / "run.json", record)
    atomic_write_text(run_dir / "config.yaml", _yaml(config.to_dict()))

    seed_everything(config.seed)
    dataset = ClipDataset(loaded)
    task = MultitaskTask(config, dataset)
    model = spec.build(config, dataset.modality_dims).to(config.device)
    record["input_dims"] = dataset.modality_dims
    record["n_parameters"] = count_parameters(model)
    record["examples"] = {c.name: {"items": len(c.video_ids), "labelled": c.labels.counts()} for c in loaded}
    result = fit(model, task, config, run_dir, progress=progress,
                 extra_state={"model": name, "input_dims": dataset.modality_dims})
    record["fit"] = {"best_epoch": result.best_epoch, "best_score": result.best_score,
                     "epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
    if result.best_epoch == 0:
        raise StoreError(f"{run_dir}: no epoch produced a finite dev mean_all (no labelled dev item?)")
    load_best(model, run_dir, config.device)
    results = evaluate_model(model, dataset, config, meld=meld, plots=run_dir / "plots")
    atomic_write_json(run_dir / "results.json", results)
    write_table([table_row(name, config, results)], run_dir)
    record.update(results=results, status="done", finished=utc_now())
    atomic_write_json(run_dir / "run.json", record)
    return MCDMRun(run_dir=run_dir, record=record)


def load_best(model: torch.nn.Module, run_dir: Path, device: str) -> None:
    """Load ``best.pt`` (the selected epoch's weights) into ``model``."""
    from affectcache.trainers.loop import BEST_CHECKPOINT, load_checkpoint

    model.load_state_dict(load_checkpoint(run_dir / BEST_CHECKPOINT, map_location=device)["model"])


def evaluate_model(model: torch.nn.Module, dataset: ClipDataset, config: MCDMTrainConfig, *,
                   meld: Corpus | None = None, plots: Path | None = None) -> dict[str, Any]:
    """Dev figures, test figures with bootstrap CIs, MELD zero-shot (and its confusion matrix PNG)."""
    from affectcache.trainers.mcdm.evaluate import predict, score, score_with_ci
    from affectcache.trainers.mcdm.task import labels_of

    results: dict[str, Any] = {}
    for split in (config.val_split, config.test_split):
        index = dataset.indices(split=split)
        if not len(index):
            continue
        outputs = predict(model, dataset, index, device=config.device)
        labels = labels_of(dataset, index)
        if split == config.val_split:
            results[split] = score(outputs, labels)
        else:
            results[split] = score_with_ci(outputs, labels, n_resamples=config.bootstrap_resamples,
                                           seed=config.seed)
            results[split]["mean_all"] = {"value": score(outputs, labels)["mean_all"]}
    if meld is not None:
        results["meld"] = meld_zero_shot(model, meld, config, plots)
    return results


def meld_zero_shot(model: torch.nn.Module, meld: Corpus, config: MCDMTrainConfig,
                   plots: Path | None) -> dict[str, Any]:
    """MELD's test items scored zero-shot through MOSEI's emotion head (see :mod:`.labels`)."""
    from affectcache.trainers.mcdm.data import ClipDataset
    from affectcache.trainers.mcdm.evaluate import meld_scores, predict
    from affectcache.trainers.mcdm.labels import MELD_CLASSES, meld_labels
    from affectcache.trainers.mcdm.labels import meld_zero_shot as to_meld

    if "emotion" not in config.active_tasks:
        raise ConfigError("MELD zero-shot needs the emotion task (active_tasks lacks it)")
    store, manifest = meld
    if not any(it.split == config.test_split for it in manifest):
        raise StoreError(f"the MELD manifest has no {config.test_split!r} items to score zero-shot")
    tests = manifest.select(split=config.test_split)
    (corpus,) = load_corpora([(store, tests)], config)
    dataset = ClipDataset([corpus])
    index = dataset.indices(split=config.test_split)
    outputs = predict(model, dataset, index, device=config.device)
    target = meld_labels(tests)[index.numpy()]
    out = meld_scores(to_meld(outputs["emotion"]), target, n_resamples=config.bootstrap_resamples,
                      seed=config.seed)
    if plots is not None:
        try:
            from affectcache.trainers.plots import plot_confusion
        except ImportError as exc:
            logger.info("MELD confusion matrix left out (%s); install the plots extra", exc)
        else:
            plots.mkdir(parents=True, exist_ok=True)
            plot_confusion(np.asarray(out["confusion"]), MELD_CLASSES, plots / "meld_confusion.png",
                           title="MELD zero-shot (MOSEI emotion head)")
    return out


def _figure(results: dict[str, Any], key: str, test_split: str) -> float | None:
    source = results.get("meld", {}) if key.startswith("meld_") else results.get(test_split, {})
    entry = source.get(key)
    return None if entry is None else float(entry["value"])


def table_row(name: str, config: MCDMTrainConfig, results: dict[str, Any], *, label: str = "",
              ) -> dict[str, Any]:
    """One Table 1 row: model, inputs, figures in percent (test split and MELD; None where absent)."""
    inputs = "+".join(MODALITY_LETTERS.get(m, m) for m in config.enabled_modalities)
    model = "MCDM-1" if config.graph == "attention" else "MCDM-2"
    row: dict[str, Any] = {"exp": label or name, "inputs": inputs, "model": model}
    for column, key in TABLE_COLUMNS:
        value = _figure(results, key, config.test_split)
        row[column] = None if value is None else round(100 * value, 2)
    return row


def write_table(rows: Sequence[dict[str, Any]], run_dir: Path) -> None:
    """results.csv and results.md (Table 1's columns; ``—`` where a figure is absent)."""
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / "results.csv", buffer.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("—" if row[c] is None else
                                       (f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]))
                                       for c in columns) + " |")
    atomic_write_text(run_dir / "results.md", "\n".join(lines) + "\n")


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    text: str = yaml.safe_dump(data, sort_keys=False)
    return text
