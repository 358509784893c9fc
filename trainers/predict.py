"""A VA run's per-frame predictions and embeddings, written into the store as a modality.

``predict_to_store(run_dir, fs, manifest, modality=...)`` runs the run's best model on the frame clock of
the chosen videos (label frames; for unlabelled videos the manifest's ``fps`` × ``n_label_rows``), merges
overlapping windows by the mean, fills frames no window reached from the nearest predicted frame,
optionally smooths (RAS: moving average, kernel 7 for valence and 13 for arousal, replicate padding) and
clamps the predictions to [−1, 1], then writes one ``frame`` entry per video::

    values (n_frames, n_labels + width) float32 = predictions ‖ exported embedding (attrs.columns)

The modality's identity is the run: ``extractor`` ``va-predict``, ``model`` = the run folder and the
sha256 of its best checkpoint, ``config`` = the run's model, config and the post-processing, and
``upstream`` = the fingerprints of the run's input modality and label tracks, so rebuilding an input marks
the predictions stale in ``affectcache status``. Predicting with a run against a store whose inputs
changed is refused. Fusion trainers read these modalities like any other frame-level input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.provenance import library_versions, sha256_file, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray
from affectcache.store.errors import StoreError
from affectcache.store.zarr_store import label_modality
from affectcache.trainers.data.clock import load_clock
from affectcache.trainers.data.views import smooth
from affectcache.trainers.loop import BEST_CHECKPOINT
from affectcache.trainers.va import check_run_inputs, predict_frames, read_run, splits_of

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

PREDICT_EXTRACTOR = "va-predict"
PREDICT_VERSION = "1"
RAS_SMOOTHING: tuple[int, ...] = (7, 13)
"""Team RAS's moving-average kernels (valence, arousal)."""


@dataclass(frozen=True, kw_only=True)
class PredictReport:
    """What :func:`predict_to_store` wrote."""

    modality: str
    """The modality written."""
    videos: tuple[str, ...]
    """Entries written."""
    columns: tuple[str, ...]
    """Names of the value columns."""


def predict_to_store(run_dir: str | Path, fs: FeatureStore, manifest: Manifest, *,
                     modality: str | None = None, splits: Sequence[str] | None = None,
                     smoothing: Sequence[int] | None = None,
                     clamp: bool = True, overwrite: bool = False) -> PredictReport:
    """Predict with a finished run and write the results into ``fs`` (see the module docstring).

    Args:
        run_dir: A finished VA run folder.
        fs: The store the run was trained from (its inputs are checked).
        manifest: Manifest of the videos (and their splits).
        modality: Name of the modality to write (default ``pred-<run folder name>``).
        splits: Predict these splits' videos (default: every manifest item).
        smoothing: Moving-average kernel per label (odd; 1 = none); None = no smoothing.
        clamp: Clamp the predictions to [−1, 1].
        overwrite: Replace an existing modality of that name made by another run.

    Raises:
        ProvenanceMismatchError: The store's inputs changed since the run, or ``modality`` exists with
            another identity (and not ``overwrite``).
    """
    run = read_run(run_dir)
    check_run_inputs(run, fs, manifest)
    config = run.config
    name = modality or f"pred-{run.run_dir.resolve().name}"
    kernels = tuple(smoothing) if smoothing is not None else tuple(1 for _ in config.labels)
    if len(kernels) != len(config.labels):
        raise StoreError(f"smoothing needs one kernel per label {list(config.labels)}, got {list(kernels)}")
    ids = splits_of(manifest, splits)
    if not ids:
        raise StoreError(f"the manifest has no items in splits {list(splits or [])}")
    clock = load_clock(fs, config.labels, ids, manifest=manifest)
    pred = predict_frames(run, fs, clock)
    values = smooth(clock, pred.preds, kernels)
    if clamp:
        values = np.clip(values, -1.0, 1.0)
    width = 0 if pred.embeddings is None else pred.embeddings.shape[1]
    columns = (*config.labels, *(f"embedding_{i}" for i in range(width)))
    output = {"run": str(run.run_dir.resolve()), "model": run.record["model"], "config": run.record["config"],
              "smoothing": list(kernels), "clamp": clamp, "columns": list(columns)}
    checkpoint_sha = sha256_file(run.run_dir / BEST_CHECKPOINT)
    upstream = {name: run.record["inputs"][name]["fingerprint"] for name in config.input_names()}
    for track in config.labels:
        upstream[label_modality(track)] = run.record["inputs"][label_modality(track)]["fingerprint"]
    provenance: dict[str, Any] = {
        "extractor": PREDICT_EXTRACTOR, "version": PREDICT_VERSION, "modality_kind": "frame",
        "config": output, "config_fingerprint": stable_hash({"output": output, "checkpoint": checkpoint_sha,
                                                             "upstream": upstream}),
        "upstream": upstream,
        "model": {"id": str(run.run_dir.resolve()), "revision": str(run.record["fit"]["best_epoch"]),
                  "sha256": checkpoint_sha},
        "libraries": library_versions(), "created": utc_now(),
    }
    fs.init_modality(name, provenance, overwrite=overwrite)
    items = {it.video_id: it for it in manifest}
    for i, vid in enumerate(clock.video_ids):
        rows = clock.rows(vid)
        block = values[rows].astype(np.float32)
        if pred.embeddings is not None:
            block = np.concatenate([block, pred.embeddings[rows]], axis=1)
        fs.write(name, FeatureArray(video_id=vid, kind="frame", values=block, frame=clock.frame[rows],
                                    time_s=clock.time_s[rows], mask=np.ones(block.shape[0], dtype=bool),
                                    attrs={"columns": list(columns),
                                           "covered_frames": int(pred.covered[rows].sum()),
                                           "labelled_clock": bool(clock.labelled[i])}),
                 source=items[vid].source_info() if vid in items else None)
    logger.info("wrote %s: %d videos, %d columns", name, len(clock), len(columns))
    return PredictReport(modality=name, videos=clock.video_ids, columns=columns)
