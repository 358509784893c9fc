"""Modality contributions of a fusion model: its own gate weights, and a model-agnostic ablation.

Seed 000's contribution maps. Two views, both per validation video:

- **Gate weights** (:func:`gate_contributions`): what the model itself weighs per frame -- RAAV's
  reliability weights over the frame modalities, DCMMOE's expert gate spread over the experts' modalities,
  the Kookmin gated unit's visual/audio share (:attr:`FusionOutput.weights`). One ``(n_frames,)`` series
  per modality; models without a gate have none.
- **Ablation** (:func:`ablation_contributions`): for every modality, the model is run again with that
  modality masked (features zeroed, validity false: :meth:`FusionBatch.without`), and the change of the
  video's CCC, ``CCC(all) - CCC(without m)``, is recorded separately for valence and arousal; positive
  means the modality helps. The per-frame ``|pred(all) - pred(without m)|`` is kept for the modality ×
  time heatmap.

A video is given as one :class:`FusionBatch` of its windows plus a ``merge`` function that turns a
``(B, T, ...)`` per-window tensor into the video's per-frame ``(n_frames, ...)`` array (the predict
step's overlap mean); :func:`merge_single_sequence` serves models that read a whole video as one
sequence. The CCC function is passed in (the trainers' metrics), so this module holds no metric maths.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from affectcache.trainers.fusion.late_fusion import DIMENSIONS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from affectcache.trainers.models.fusion_batch import FusionBatch, FusionModel

FloatArray = npt.NDArray[np.float64]


def merge_single_sequence(batch: FusionBatch, values: torch.Tensor) -> FloatArray:
    """Per-frame values of a video given as one sequence: ``values[0][mask[0]]``."""
    if values.shape[0] != 1:
        raise ValueError(f"merge_single_sequence expects one sequence per video, got {values.shape[0]} "
                         "windows; pass the predict step's window merge instead")
    merged: FloatArray = values[0][batch.mask[0].bool()].detach().double().cpu().numpy()
    return merged


@dataclass(kw_only=True)
class VideoAblation:
    """Ablation of one video."""

    ccc_full: tuple[float, float]
    """Valence, arousal CCC with every modality."""

    ccc_without: dict[str, tuple[float, float]]
    """Modality -> valence, arousal CCC with that modality masked."""

    frame_effect: dict[str, FloatArray]
    """Modality -> ``(n_frames, 2)`` absolute change of the prediction when it is masked."""

    def delta(self, modality: str) -> tuple[float, float]:
        """``CCC(all) - CCC(without modality)`` for valence and arousal."""
        w = self.ccc_without[modality]
        return (self.ccc_full[0] - w[0], self.ccc_full[1] - w[1])


@dataclass(kw_only=True)
class AblationResult:
    """Per-video ablations of a model over a set of videos."""

    modalities: tuple[str, ...]
    """The modalities ablated, in order."""

    videos: dict[str, VideoAblation] = field(default_factory=dict)
    """Video id -> its ablation."""

    def summary(self) -> dict[str, dict[str, float]]:
        """Modality -> ``{"valence": mean ΔCCC, "arousal": mean ΔCCC, "valence_share": ..., "arousal_share":
        ...}`` over the videos. A share is the modality's positive mean ΔCCC over the sum of the positive
        means of every modality (0 when none helps): how much of the fusion's gain each modality carries."""
        out: dict[str, dict[str, float]] = {}
        for m in self.modalities:
            deltas = np.array([v.delta(m) for v in self.videos.values()], dtype=np.float64)
            means = np.nanmean(deltas, axis=0) if len(deltas) else np.full(2, np.nan)
            out[m] = {DIMENSIONS[d]: float(means[d]) for d in range(2)}
        for d in DIMENSIONS:
            gains = {m: max(out[m][d], 0.0) if np.isfinite(out[m][d]) else 0.0 for m in self.modalities}
            total = sum(gains.values())
            for m in self.modalities:
                out[m][f"{d}_share"] = gains[m] / total if total > 0 else 0.0
        return out

    def rows(self) -> list[dict[str, object]]:
        """One row per (video, modality): CCCs with and without it and their differences (a CSV table)."""
        rows: list[dict[str, object]] = []
        for vid, v in self.videos.items():
            for m in self.modalities:
                dv, da = v.delta(m)
                rows.append({"video_id": vid, "modality": m, "ccc_valence": v.ccc_full[0],
                             "ccc_arousal": v.ccc_full[1], "ccc_valence_without": v.ccc_without[m][0],
                             "ccc_arousal_without": v.ccc_without[m][1], "delta_valence": dv,
                             "delta_arousal": da})
        return rows


def _score_pair(pred: FloatArray, target: FloatArray, valid: npt.NDArray[np.bool_],
                score: Callable[[FloatArray, FloatArray], float]) -> tuple[float, float]:
    out = []
    for d in range(2):
        rows = valid[:, d] & np.isfinite(target[:, d])
        out.append(float(score(pred[rows, d], target[rows, d])) if rows.sum() >= 2 else float("nan"))
    return (out[0], out[1])


def _run(model: FusionModel, batch: FusionBatch) -> torch.Tensor:
    return model(batch).preds


@contextlib.contextmanager
def _evaluating(model: FusionModel) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the block; the model's mode is restored after."""
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = bool(module.training) if module is not None else False
    if module is not None:
        module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if module is not None:
            module.train(was_training)


def ablation_contributions(model: FusionModel, videos: Mapping[str, FusionBatch],
                           targets: Mapping[str, npt.ArrayLike], *,
                           score: Callable[[FloatArray, FloatArray], float],
                           valid: Mapping[str, npt.ArrayLike] | None = None,
                           modalities: Sequence[str] | None = None,
                           merge: Callable[[FusionBatch, torch.Tensor], FloatArray] = merge_single_sequence,
                           ) -> AblationResult:
    """CCC change per video when each modality is masked (see the module docstring).

    Args:
        model: A fusion model (run in eval mode under ``torch.inference_mode``; its mode is restored).
        videos: Video id -> the video's windows as one batch.
        targets: Video id -> ``(n_frames, 2)`` valence, arousal on the frames ``merge`` returns.
        score: ``score(pred, target) -> CCC`` over 1-D arrays (the trainers' CCC).
        valid: Video id -> ``(n_frames,)`` or ``(n_frames, 2)`` bool; default: finite targets.
        modalities: Modalities to ablate (default: all the model reads).
        merge: ``(batch, (B, T, ...) tensor) -> (n_frames, ...)`` per-frame array of the video.

    Raises:
        ValueError: A video has no targets, or merged predictions and targets differ in length.
    """
    names = tuple(modalities) if modalities is not None else tuple(model.modalities)
    unknown = [m for m in names if m not in model.modalities]
    if unknown:
        raise ValueError(f"cannot ablate {unknown}: the model reads {list(model.modalities)}")
    result = AblationResult(modalities=names)
    with _evaluating(model):
        for vid, batch in videos.items():
            if vid not in targets:
                raise ValueError(f"no targets for video {vid!r}; pass its (n_frames, 2) labels")
            y = np.asarray(targets[vid], dtype=np.float64)
            full = merge(batch, _run(model, batch))
            if full.shape != y.shape:
                raise ValueError(f"{vid}: merged predictions {full.shape} and targets {y.shape} differ; "
                                 "targets must be on the frames the merge returns")
            ok = np.ones(y.shape, dtype=bool)
            if valid is not None and vid in valid:
                v = np.asarray(valid[vid], dtype=bool)
                ok &= v[:, None] if v.ndim == 1 else v
            ablation = VideoAblation(ccc_full=_score_pair(full, y, ok, score), ccc_without={},
                                     frame_effect={})
            for m in names:
                masked = merge(batch, _run(model, batch.without(m)))
                ablation.ccc_without[m] = _score_pair(masked, y, ok, score)
                ablation.frame_effect[m] = np.abs(full - masked)
            result.videos[vid] = ablation
    return result


def gate_contributions(model: FusionModel, videos: Mapping[str, FusionBatch], *,
                       merge: Callable[[FusionBatch, torch.Tensor], FloatArray] = merge_single_sequence,
                       ) -> dict[str, dict[str, FloatArray]]:
    """Video id -> modality -> ``(n_frames,)`` gate weight read off the model (empty without a gate)."""
    out: dict[str, dict[str, FloatArray]] = {}
    with _evaluating(model):
        for vid, batch in videos.items():
            out[vid] = {m: merge(batch, w) for m, w in model(batch).weights.items()}
    return out


def summarise_gates(gates: Mapping[str, Mapping[str, FloatArray]]) -> dict[str, float]:
    """Modality -> mean gate weight over every frame of every video."""
    series: dict[str, list[FloatArray]] = {}
    for per_video in gates.values():
        for m, w in per_video.items():
            series.setdefault(m, []).append(np.asarray(w, dtype=np.float64))
    return {m: float(np.concatenate(ws).mean()) for m, ws in series.items()}
