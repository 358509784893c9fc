"""``affectcache fuse late``: late fusion of prediction modalities in a store, written as a new one.

The inputs are frame modalities on the label clock whose first two columns are valence and arousal (what
``affectcache predict`` writes). They are put on the frame clock of the validation split by part 1's
nearest-valid rule, the subset and weights are chosen there
(:func:`~affectcache.trainers.fusion.late_fusion.search_late_fusion`), then applied to every video of the
chosen splits and written as a frame modality of two columns. Its provenance lists the inputs (as
``upstream``, so rebuilding one marks it stale), the chosen models, both weight vectors and the validation
CCCs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray
from affectcache.store.errors import StoreError
from affectcache.trainers.data.clock import FrameClock, load_clock
from affectcache.trainers.data.inputs import align_frame_input, load_input
from affectcache.trainers.fusion.late_fusion import (
    DIMENSIONS,
    FusionChoice,
    LateFusionConfig,
    apply_late_fusion,
    search_late_fusion,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

LATE_FUSION_EXTRACTOR = "late-fusion"
LATE_FUSION_VERSION = "1"


@dataclass(frozen=True, kw_only=True)
class LateFusionReport:
    """What ``fuse late`` wrote."""

    modality: str
    """The new prediction modality."""
    choice: FusionChoice
    """Chosen inputs, weights and their validation CCCs."""
    videos: tuple[str, ...]
    """Videos written."""


def _on_clock(fs: FeatureStore, name: str, clock: FrameClock) -> npt.NDArray[np.float64]:
    """``(n_clock, 2)`` valence, arousal of a prediction modality on ``clock`` (NaN where it has none)."""
    columns = fs.provenance(name).get("config", {}).get("columns")
    if columns is not None and tuple(columns[:2]) != DIMENSIONS:
        raise StoreError(f"{name} does not start with valence, arousal columns (it has {columns[:2]}); "
                         "fuse prediction modalities written by affectcache predict")
    source = load_input(fs, name, list(clock.video_ids), (0, 2))
    aligned = align_frame_input(source, clock, max_fill_s=None)
    values = source.matrix()[aligned.index].astype(np.float64)
    values[~aligned.valid] = np.nan
    return values


def fuse_late_to_store(fs: FeatureStore, manifest: Manifest, inputs: Sequence[str], name: str, *,
                       config: LateFusionConfig | None = None, val_split: str = "val",
                       splits: Sequence[str] | None = None, overwrite: bool = False) -> LateFusionReport:
    """Choose late-fusion weights on ``val_split`` and write the fused modality ``name``.

    Raises:
        StoreError: Fewer than two inputs, an input missing or not a prediction modality, or no labelled
            ``val_split`` video.
    """
    config = config or LateFusionConfig()
    if len(set(inputs)) < 2:
        raise StoreError(f"late fusion needs at least two distinct prediction modalities, got {list(inputs)}")
    val_ids = [it.video_id for it in manifest if it.split == val_split]
    if not val_ids:
        raise StoreError(f"the manifest has no {val_split!r} items to choose the weights on")
    val_clock = load_clock(fs, DIMENSIONS, val_ids, manifest=manifest)
    if not val_clock.target_mask.any():
        raise StoreError(f"the {val_split!r} videos have no labelled frames to choose the weights on")
    preds = {m: _on_clock(fs, m, val_clock) for m in inputs}
    result = search_late_fusion(preds, val_clock.targets, val_clock.target_mask, config)
    choice = result.best
    logger.info("late fusion on %s: %s (CCC valence %.3f, arousal %.3f)", val_split, list(choice.models),
                choice.ccc_valence, choice.ccc_arousal)

    ids = [it.video_id for it in manifest if splits is None or it.split in splits]
    clock = load_clock(fs, DIMENSIONS, ids, manifest=manifest)
    fused = apply_late_fusion({m: _on_clock(fs, m, clock) for m in choice.models}, choice)
    upstream = {m: fs.provenance(m)["config_fingerprint"] for m in inputs}
    described: dict[str, Any] = {"inputs": list(inputs), "val_split": val_split, "search": config.to_dict(),
                                 "choice": choice.to_dict(), "columns": list(DIMENSIONS)}
    provenance: dict[str, Any] = {
        "extractor": LATE_FUSION_EXTRACTOR, "version": LATE_FUSION_VERSION, "modality_kind": "frame",
        "config": described, "config_fingerprint": stable_hash({"config": described, "upstream": upstream}),
        "upstream": upstream, "model": {"id": None, "revision": None, "sha256": None},
        "libraries": library_versions(), "created": utc_now(),
    }
    fs.init_modality(name, provenance, overwrite=overwrite)
    items = {it.video_id: it for it in manifest}
    for vid in clock.video_ids:
        rows = clock.rows(vid)
        block = fused[rows]
        ok = np.asarray(np.isfinite(block).all(axis=1), dtype=bool)
        values = np.nan_to_num(block).astype(np.float32)
        fs.write(name, FeatureArray(video_id=vid, kind="frame", values=values,
                                    frame=clock.frame[rows], time_s=clock.time_s[rows], mask=ok,
                                    attrs={"columns": list(DIMENSIONS)}),
                 source=items[vid].source_info() if vid in items else None)
    return LateFusionReport(modality=name, choice=choice, videos=clock.video_ids)
