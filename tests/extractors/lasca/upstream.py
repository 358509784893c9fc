"""Synthetic stored-modality arrays for the LaScA tests (no media, no models)."""

from __future__ import annotations

import numpy as np

from affectcache.extractors import FeatureArray
from affectcache.extractors.visual.blendshapes import BLENDSHAPE_NAMES


def fake_blendshapes(video_id: str, duration_s: float, *, fps: float = 5.0, seed: int = 0,
                     level: float = 0.0, no_face_after_s: float | None = None) -> FeatureArray:
    """Random scores in [0, 1] (+ ``level``), masked after ``no_face_after_s``."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * fps)
    time_s = np.arange(n) / fps
    values = np.clip(rng.random((n, len(BLENDSHAPE_NAMES))) * 0.5 + level, 0, 1).astype(np.float32)
    mask = np.ones(n, bool) if no_face_after_s is None else time_s < no_face_after_s
    values[~mask] = 0
    return FeatureArray(video_id=video_id, kind="frame", values=values, frame=np.arange(n), time_s=time_s,
                        mask=mask, attrs={"categories": list(BLENDSHAPE_NAMES)})


def fake_mfcc(video_id: str, duration_s: float, *, n_mfcc: int = 15, seed: int = 0,
              level: float = 0.0) -> FeatureArray:
    """Random coefficients every 10 ms (+ ``level``), nothing masked."""
    rng = np.random.default_rng(seed + 1000)
    n = round(duration_s * 100)
    values = (rng.standard_normal((n, n_mfcc)) * 5 + level).astype(np.float32)
    return FeatureArray(video_id=video_id, kind="frame", values=values, frame=np.arange(n),
                        time_s=np.arange(n) / 100.0, mask=np.ones(n, bool))


def fake_upstream(video_id: str, duration_s: float, seed: int = 0,
                  level: float = 0.0) -> dict[str, FeatureArray]:
    """``{"blendshapes": ..., "mfcc": ...}`` of one item."""
    return {"blendshapes": fake_blendshapes(video_id, duration_s, seed=seed, level=level),
            "mfcc": fake_mfcc(video_id, duration_s, seed=seed, level=level * 20)}
