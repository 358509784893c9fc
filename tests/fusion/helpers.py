"""Independent references and random batches for the fusion tests (test-only)."""

from __future__ import annotations

import numpy as np
import torch

from affectcache.trainers.models.fusion_batch import FusionBatch


def ccc(pred: np.ndarray, target: np.ndarray) -> float:
    """Lin's CCC with population moments, written from the definition in float64."""
    x = np.asarray(pred, dtype=np.float64).ravel()
    y = np.asarray(target, dtype=np.float64).ravel()
    mx, my = x.mean(), y.mean()
    sxy = np.mean((x - mx) * (y - my))
    return float(2 * sxy / (np.mean((x - mx) ** 2) + np.mean((y - my) ** 2) + (mx - my) ** 2 + 1e-8))





def make_batch(dims: dict[str, int], lengths: dict[str, int], batch: int = 2, frames: int = 12,
               seed: int = 0, frame_lengths: list[int] | None = None) -> FusionBatch:
    """Random inputs; every row valid except the frame padding given by ``frame_lengths``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    for b, n in enumerate(frame_lengths or []):
        mask[b, n:] = False
    inputs, valid = {}, {}
    for m, d in dims.items():
        t = lengths.get(m, frames)
        inputs[m] = torch.randn(batch, t, d, generator=g)
        valid[m] = mask.clone() if t == frames else torch.ones(batch, t, dtype=torch.bool)
    return FusionBatch(inputs=inputs, valid=valid, mask=mask)
