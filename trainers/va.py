"""Valence/arousal training runs: from the store to a run folder with provenance, results and plots.

``train_va(name, fs, manifest, out_dir)`` trains a registered VA model (``ras-face``, ``ras-behaviour``,
``ras-audio``) on the manifest's splits and writes::

    run.json            format, model name, config, seed, libraries, manifest digest, input identities
                        (fingerprints chain everything upstream), label tracks + hash of the labels used,
                        split video lists, fit summary, final results (val, and test when labelled)
    config.yaml         the config (``affectcache train NAME --config run/config.yaml`` reproduces it)
    metrics.csv/.jsonl  per-epoch training loss, learning rate, validation CCCs (from the loop)
    best.pt, last.pt    checkpoints (``torch.load(weights_only=True)``; see :mod:`affectcache.trainers.loop`)
    results.json        per split: CCC per label and va_score with video-level bootstrap CIs
    per_video_<split>.csv   per video: frames scored, CCC per label, mean
    plots/              (with the ``plots`` extra) target vs estimate over time for a few validation
                        videos, CCC per validation video

Training again into the same folder resumes (the loop's ``last.pt``) when the config and the store's inputs
are unchanged; different inputs are refused (:class:`~affectcache.store.errors.ProvenanceMismatchError`),
a different config too (:class:`~affectcache.extractors.core.errors.ConfigError`), unless ``overwrite``.
"""

from __future__ import annotations

import csv
import io
import json
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
from affectcache.store.zarr_store import label_modality
from affectcache.trainers import metrics
from affectcache.trainers.data.clock import FrameClock, load_clock
from affectcache.trainers.data.config import VAConfig
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.provenance import check_inputs, modality_identity, prepare_run_dir

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import torch

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.va_tasks import FramePredictions, VATask

logger = logging.getLogger(__name__)

RUN_FORMAT = "affectcache-va-run/1"
PLOTTED_VIDEOS = 4
"""Validation videos drawn in the target-vs-estimate figure."""


@dataclass(frozen=True, kw_only=True)
class VARun:
    """A trained run."""

    run_dir: Path
    """The run folder."""
    record: dict[str, Any]
    """Content of run.json."""


def split_videos(manifest: Manifest, config: VAConfig) -> dict[str, list[str]]:
    """Video ids of the train, val and test splits (a video belongs to one split only)."""
    out: dict[str, list[str]] = {config.train_split: [], config.val_split: [], config.test_split: []}
    for item in manifest:
        if item.split in out:
            out[item.split].append(item.video_id)
    for split in (config.train_split, config.val_split):
        if not out[split]:
            raise StoreError(f"the manifest has no {split!r} items; a VA run needs train and val splits "
                             "(set train_split/val_split)")
    return out


def run_inputs(fs: FeatureStore, config: VAConfig, clock: FrameClock) -> dict[str, Any]:
    """What the run's numbers depend on: the input modality's identity, the label tracks' fingerprints and
    a hash of the label values of the run's videos."""
    inputs: dict[str, Any] = {name: modality_identity(fs, name) for name in config.input_names()}
    for track in config.labels:
        name = label_modality(track)
        inputs[name] = {"fingerprint": fs.provenance(name)["config_fingerprint"]}
    inputs["labels_sha256"] = clock.labels_digest()
    return inputs


def _split_clocks(fs: FeatureStore, manifest: Manifest, config: VAConfig, splits: dict[str, list[str]],
                  ) -> dict[str, FrameClock]:
    every = [v for ids in splits.values() for v in ids]
    clock = load_clock(fs, config.labels, every, manifest=manifest)
    clocks = {split: clock.subset(ids) for split, ids in splits.items() if ids}
    for split in (config.train_split, config.val_split):
        clock = clocks[split]
        unlabelled = [v for v, ok in zip(clock.video_ids, clock.labelled, strict=True) if not ok]
        if unlabelled:
            raise StoreError(f"{len(unlabelled)} {split} videos have no label tracks (e.g. {unlabelled[0]}); "
                             "import their labels or move them out of the split")
    return clocks


def _labelled_clock(clocks: dict[str, FrameClock], config: VAConfig) -> FrameClock:
    """The train + val clock: the labels a run depends on."""
    ids = [*clocks[config.train_split].video_ids, *clocks[config.val_split].video_ids]
    return _concat(clocks[config.train_split], clocks[config.val_split], ids)


def _concat(a: FrameClock, b: FrameClock, ids: list[str]) -> FrameClock:
    offsets = np.concatenate([a.offsets, a.offsets[-1] + b.offsets[1:]])
    return FrameClock(video_ids=tuple(ids), offsets=offsets,
                      frame=np.concatenate([a.frame, b.frame]), time_s=np.concatenate([a.time_s, b.time_s]),
                      fps=np.concatenate([a.fps, b.fps]), labels=a.labels,
                      targets=np.concatenate([a.targets, b.targets]),
                      target_mask=np.concatenate([a.target_mask, b.target_mask]),
                      labelled=np.concatenate([a.labelled, b.labelled]))


def train_va(name: str, fs: FeatureStore, manifest: Manifest, out_dir: str | Path, *,
             config: VAConfig | None = None, overwrite: bool = False, progress: bool = False) -> VARun:
    """Train the registered VA model ``name`` into ``out_dir`` (see the module docstring).

    Raises:
        ProvenanceMismatchError: ``out_dir`` holds a run trained on other inputs (and not ``overwrite``).
        ConfigError: ``out_dir`` holds a run with another config or model (and not ``overwrite``).
        StoreError: A split is empty or unlabelled, or an input is missing.
    """
    import torch

    from affectcache.trainers.loop import fit, seed_everything
    from affectcache.trainers.va_tasks import make_task

    spec = get_model_spec(name)
    config = config if config is not None else spec.config_type()  # type: ignore[assignment]
    if not isinstance(config, spec.config_type) or not getattr(config, "view", ""):
        raise ConfigError(f"{name} needs a {spec.config_type.__name__} (a VA config), got "
                          f"{type(config).__name__}")
    run_dir = Path(out_dir)
    splits = split_videos(manifest, config)
    clocks = _split_clocks(fs, manifest, config, splits)
    inputs = run_inputs(fs, config, _labelled_clock(clocks, config))
    prepare_run_dir(run_dir, name, config.to_dict(), inputs, overwrite=overwrite)
    record: dict[str, Any] = {
        "format": RUN_FORMAT, "model": name, "config": config.to_dict(), "seed": config.seed,
        "created": utc_now(), "store": fs.url, "manifest": manifest_digest(manifest),
        "inputs": inputs, "labels": list(config.labels), "splits": splits,
        "libraries": library_versions(("scikit-learn", "matplotlib")), "status": "training",
    }
    atomic_write_json(run_dir / "run.json", record)
    atomic_write_text(run_dir / "config.yaml", _yaml(config.to_dict()))

    seed_everything(config.seed)
    task = make_task(config, fs, clocks)
    model = spec.build(config, task.input_dims).to(config.device)
    record.update(task.init_model(model))
    record["input_width"] = task.input_width
    record["input_dims"] = dict(task.input_dims)
    record["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    result = fit(model, task, config, run_dir, progress=progress,
                 extra_state={"model": name, "input_width": task.input_width,
                              "input_dims": dict(task.input_dims)})
    record["fit"] = {"best_epoch": result.best_epoch, "best_score": result.best_score,
                     "epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
    if result.best_epoch == 0:
        raise StoreError(f"{run_dir}: no epoch produced a finite validation score (constant predictions or "
                         "no labelled validation frame)")
    load_weights(model, run_dir, config.device)
    model.eval()
    results: dict[str, Any] = {}
    for split in (config.val_split, config.test_split):
        clock = clocks.get(split)
        if clock is None or not clock.target_mask.any():
            continue
        pred = _predict(task, model, clock)
        results[split] = score_split(pred, config, run_dir / f"per_video_{split}.csv")
        if split == config.val_split:
            _plots(pred, run_dir / "plots", config.eval_moments)
            with torch.no_grad():
                record.update(task.write_run_extras(model, clock, run_dir))
    atomic_write_json(run_dir / "results.json", results)
    record.update(results=results, status="done", finished=utc_now())
    atomic_write_json(run_dir / "run.json", record)
    return VARun(run_dir=run_dir, record=record)


def _predict(task: VATask, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
             ) -> FramePredictions:
    import torch

    with torch.no_grad():
        return task.predict(model, clock, embeddings=embeddings)


def load_weights(model: torch.nn.Module, run_dir: Path, device: str) -> None:
    """Load ``best.pt`` (the selected epoch's, EMA-averaged when the run used EMA) into ``model``."""
    from affectcache.trainers.loop import BEST_CHECKPOINT, load_checkpoint

    model.load_state_dict(load_checkpoint(run_dir / BEST_CHECKPOINT, map_location=device)["model"])


def score_split(pred: FramePredictions, config: VAConfig, per_video_csv: Path | None = None,
                ) -> dict[str, Any]:
    """CCC per label and va_score with video-level bootstrap CIs; per-video scores to ``per_video_csv``."""
    clock = pred.clock
    groups = clock.row_video
    out: dict[str, Any] = {"n_videos": len(clock), "n_frames": int(clock.target_mask.sum())}
    per_video: dict[str, np.ndarray] = {}
    for k, label in enumerate(clock.labels):
        ci = metrics.cluster_bootstrap_ci(pred.preds[:, k], clock.targets[:, k], groups, clock.target_mask,
                                          moments=config.eval_moments,
                                          n_resamples=max(config.bootstrap_resamples, 1), seed=config.seed)
        out[f"ccc_{label}"] = {"value": ci.value, "low": ci.low, "high": ci.high, "confidence": ci.confidence}
        per_video[label] = metrics.per_group_scores(pred.preds[:, k], clock.targets[:, k], groups,
                                                    clock.target_mask, moments=config.eval_moments)
    out["va_score"] = float(np.mean([out[f"ccc_{label}"]["value"] for label in clock.labels]))
    if per_video_csv is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["video_id", "n_frames", *(f"ccc_{label}" for label in clock.labels), "ccc_mean"])
        counts = np.bincount(groups[clock.target_mask], minlength=len(clock))
        for i, vid in enumerate(clock.video_ids):
            scores = [float(per_video[label][i]) if i < per_video[label].size else float("nan")
                      for label in clock.labels]
            writer.writerow([vid, int(counts[i]), *(f"{s:.6f}" for s in scores), f"{np.mean(scores):.6f}"])
        atomic_write_text(per_video_csv, buffer.getvalue())
    return out


def _plots(pred: FramePredictions, folder: Path, moments: metrics.Moments) -> None:
    """Target vs estimate over time and CCC per video, when matplotlib (the ``plots`` extra) is installed."""
    try:
        from affectcache.trainers.plots import plot_ccc_per_video, plot_traces
    except ImportError as exc:
        logger.info("plots left out (%s); install the plots extra to get them", exc)
        return
    folder.mkdir(parents=True, exist_ok=True)
    plot_traces(pred, folder / "traces.png", n_videos=PLOTTED_VIDEOS)
    plot_ccc_per_video(pred, folder / "ccc_per_video.png", moments=moments)


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    text: str = yaml.safe_dump(data, sort_keys=False)
    return text


@dataclass(frozen=True, kw_only=True)
class LoadedRun:
    """A run folder's record, config, task inputs check and model, ready to predict."""

    run_dir: Path
    """The run folder."""
    record: dict[str, Any]
    """Content of run.json."""
    config: VAConfig
    """The run's config."""


def read_run(run_dir: str | Path) -> LoadedRun:
    """The record and config of a finished VA run (refused when it is none or did not finish)."""
    folder = Path(run_dir)
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{folder} is not a VA run (no run.json); train one with affectcache train"
                         ) from None
    if record.get("format") != RUN_FORMAT:
        raise StoreError(f"{folder} holds a {record.get('format')!r} run, not a VA run")
    if record.get("status") != "done":
        raise StoreError(f"{folder}: training did not finish; run the same train command again to resume")
    spec = get_model_spec(record["model"])
    config = spec.config_type.from_dict(record["config"])
    if not isinstance(config, VAConfig):
        raise StoreError(f"{folder}: {record['model']} is not a VA model")
    return LoadedRun(run_dir=folder, record=record, config=config)


def check_run_inputs(run: LoadedRun, fs: FeatureStore, manifest: Manifest) -> None:
    """Refuse a store whose inputs differ from the run's (rebuilt input, relabelled videos)."""
    config = run.config
    splits = {k: list(v) for k, v in run.record["splits"].items()}
    clocks = _split_clocks(fs, manifest, config, {k: v for k, v in splits.items()
                                                  if k in (config.train_split, config.val_split)})
    current = run_inputs(fs, config, _labelled_clock(clocks, config))
    check_inputs(run.record["inputs"], current, str(run.run_dir))


def evaluate_va(run_dir: str | Path, fs: FeatureStore, manifest: Manifest, *, split: str) -> dict[str, Any]:
    """Scores of a run's best model on a labelled split of a store with the same inputs."""
    run = read_run(run_dir)
    check_run_inputs(run, fs, manifest)
    config = run.config
    ids = [it.video_id for it in manifest if it.split == split]
    if not ids:
        raise StoreError(f"the manifest has no {split!r} items to evaluate on")
    clock = load_clock(fs, config.labels, ids, manifest=manifest)
    if not clock.target_mask.any():
        raise StoreError(f"the {split!r} videos have no labelled frames to score")
    task = _predict_task(config, fs, clock)
    model = build_trained_model(run, task.input_dims)
    out = score_split(_predict(task, model, clock), config, run.run_dir / f"per_video_{split}.csv")
    atomic_write_json(run.run_dir / f"eval-{split}.json", out)
    return out


def _predict_task(config: VAConfig, fs: FeatureStore, clock: FrameClock) -> VATask:
    """A task that only predicts (no training view)."""
    from affectcache.trainers.va_tasks import make_task

    return make_task(config, fs, {"<predict>": clock})


def build_trained_model(run: LoadedRun, input_dims: Mapping[str, int]) -> torch.nn.Module:
    """The run's model with its best weights, in eval mode."""
    spec = get_model_spec(run.record["model"])
    trained = run.record.get("input_dims", {"input": run.record.get("input_width")})
    if dict(input_dims) != trained:
        raise StoreError(f"{', '.join(run.config.input_names())} now give {dict(input_dims)} values per row, "
                         f"the run was trained on {trained}")
    model = spec.build(run.config, input_dims).to(run.config.device)
    load_weights(model, run.run_dir, run.config.device)
    return model.eval()


def predict_frames(run: LoadedRun, fs: FeatureStore, clock: FrameClock) -> FramePredictions:
    """A run's frame predictions and embeddings on ``clock`` (inputs already checked by the caller)."""
    task = _predict_task(run.config, fs, clock)
    return _predict(task, build_trained_model(run, task.input_dims), clock, embeddings=True)


def splits_of(manifest: Manifest, names: Sequence[str] | None) -> list[str]:
    """Video ids of the manifest items in ``names`` (all items when None)."""
    return [it.video_id for it in manifest if names is None or it.split in names]
