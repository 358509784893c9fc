"""The VA part of the offline demo: ``ras-face`` and ``ras-audio`` trained on the demo store.

After the demo store is built (``affectcache demo``), :func:`train_demo_heads` trains the two heads with
their ``demo`` presets (small models, few epochs) on the planted corpus — ``ras-face`` on the face crops'
CLIP embeddings (``clip-face``; the whole-frame ``clip-scene`` when no face modality was built) and
``ras-audio`` on ``wavlm-frames`` — writes their predictions into the store (``pred-ras-face``,
``pred-ras-audio``) and returns the held-out (test split) CCCs. Runs go to ``<out>/runs/``. Running it
again reuses the finished runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.trainers.models import get_model_spec
from affectcache.trainers.predict import predict_to_store
from affectcache.trainers.va import train_va

if TYPE_CHECKING:
    from collections.abc import Mapping

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

FACE_INPUTS: tuple[str, ...] = ("clip-face", "clip-scene")
"""Face-head inputs, in order of preference (the first one the store has is used)."""


@dataclass(frozen=True, kw_only=True)
class DemoHead:
    """One trained demo head."""

    model: str
    """Registry name."""
    input_modality: str
    """What it was trained on."""
    run_dir: Path
    """Its run folder."""
    held_out: dict[str, Any]
    """Scores on the held-out split (CCC per label with bootstrap CI, va_score)."""
    prediction_modality: str
    """The modality its predictions were written to."""


def _face_input(fs: FeatureStore) -> str:
    for name in FACE_INPUTS:
        if name in fs.modalities():
            return name
    raise LookupError(f"the demo store has none of {list(FACE_INPUTS)}; build the demo first")


def train_demo_heads(fs: FeatureStore, manifest: Manifest, out_dir: Path, *, progress: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DemoHead]:
    """Train, predict and score both demo heads (see the module docstring); ``overrides`` changes fields
    of both demo presets (e.g. fewer epochs)."""
    heads = []
    for name, modality in (("ras-face", _face_input(fs)), ("ras-audio", "wavlm-frames")):
        spec = get_model_spec(name)
        presets = dict(spec.presets or {})
        config = presets["demo"]().replace(input_modality=modality, **dict(overrides or {}))
        run = train_va(name, fs, manifest, out_dir / "runs" / name, config=config, progress=progress)
        results = run.record["results"]
        split = config.test_split if config.test_split in results else config.val_split
        report = predict_to_store(run.run_dir, fs, manifest, modality=f"pred-{name}", overwrite=True)
        heads.append(DemoHead(model=name, input_modality=modality, run_dir=run.run_dir,
                              held_out={"split": split, **results[split]},
                              prediction_modality=report.modality))
    return heads
