"""MCDM's evaluation: decision rules, per-task figures, the selection score and bootstrap intervals.

Computed with :mod:`affectcache.trainers.metrics` on the examples labelled for each task:

* emotion (MOSEI, multi-label over the 6 non-neutral classes): softmax; when ``p(Neutral) ≥ 6/7`` no
  emotion is predicted, else every class with ``p ≥ 1/7``; targets are ``label > 0`` on those 6 classes.
  Paper figures ``mWACC`` and ``mMF1``; the authors' selection uses ``mF1`` (= mMF1) and ``mUAR`` (per
  class binary macro-recall, averaged): ``mean_emo = (mF1 + mUAR) / 2``.
* personality (FIv2): ``mACC = 1 − mean MAE`` over the 5 traits; ``mCCC`` = mean of the per-trait CCCs
  (the paper's figure); the authors' code computes one CCC over the flattened ``n × 5`` matrix
  (``ccc_flat``) and selects on ``mean_pkl = (mACC + ccc_flat) / 2``.
* A/H (BAH): argmax; ``MF1`` (macro) and ``UAR``; ``mean_ah = (MF1 + UAR) / 2``.
* ``mean_all`` = mean of the task means available on the split (the authors' selection metric).
* MELD (zero-shot, single-label): MOSEI's emotion argmax mapped to MELD's classes; ``MF1`` and ``WF1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from affectcache.trainers import metrics

if TYPE_CHECKING:
    from affectcache.trainers.mcdm.data import ClipDataset

NEUTRAL_THRESHOLD = 6 / 7
"""``p(Neutral)`` at or above which no emotion is predicted (the authors' rule)."""
CLASS_THRESHOLD = 1 / 7
"""Probability at or above which a non-neutral emotion is predicted."""

Outputs = dict[str, npt.NDArray[np.float32]]
Figure = Callable[[Outputs, dict[str, npt.NDArray[np.float32]], npt.NDArray[np.int64]], float]


def predict(model: torch.nn.Module, dataset: ClipDataset, index: torch.Tensor, *, batch_size: int = 256,
            device: str = "cpu") -> Outputs:
    """Model outputs (emotion/ah logits, personality scores) of examples ``index``, in order."""
    parts: dict[str, list[npt.NDArray[np.float32]]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in dataset.batches(index, batch_size):
            out = model({m: t.to(device) for m, t in batch.features.items()})
            for task, value in out.items():
                parts.setdefault(task, []).append(value.float().cpu().numpy())
    model.train(was_training)
    return {task: np.concatenate(chunks) for task, chunks in parts.items()}


def emotion_decisions(logits: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``(n, 6)`` 0/1 decisions on the non-neutral classes by the authors' neutral rule."""
    probs = torch.softmax(torch.as_tensor(np.asarray(logits, np.float32)), dim=1).numpy()
    none = probs[:, 0] >= NEUTRAL_THRESHOLD
    decided: npt.NDArray[np.int64] = ((probs[:, 1:] >= CLASS_THRESHOLD) & ~none[:, None]).astype(np.int64)
    return decided


def _emotion_targets(labels: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    return (labels[:, 1:] > 0).astype(np.int64)


def _muar(p: npt.NDArray[np.int64], t: npt.NDArray[np.int64]) -> float:
    return float(np.mean([metrics.uar(p[:, c], t[:, c], num_classes=2) for c in range(p.shape[1])]))


def _traits_ccc(p: npt.NDArray[np.float32], t: npt.NDArray[np.float32]) -> float:
    return float(np.mean([metrics.ccc(p[:, k].astype(np.float64), t[:, k].astype(np.float64))
                          for k in range(p.shape[1])]))


# Figure name → (task, function of (outputs, labels) restricted to the task's labelled rows).
_FIGURES: dict[str, tuple[str, Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], float]]] = {
    "mosei_mwacc": ("emotion", lambda o, y: metrics.mwacc(emotion_decisions(o), _emotion_targets(y))),
    "mosei_mmf1": ("emotion", lambda o, y: metrics.mmf1(emotion_decisions(o), _emotion_targets(y))),
    "mosei_muar": ("emotion", lambda o, y: _muar(emotion_decisions(o), _emotion_targets(y))),
    "fiv2_macc": ("personality", lambda o, y: 1.0 - float(np.abs(o - y).mean())),
    "fiv2_mccc": ("personality", _traits_ccc),
    "fiv2_ccc_flat": ("personality", lambda o, y: float(metrics.ccc(o.reshape(-1).astype(np.float64),
                                                                    y.reshape(-1).astype(np.float64)))),
    "bah_mf1": ("ah", lambda o, y: metrics.f1(o.argmax(1), y, num_classes=2)),
    "bah_uar": ("ah", lambda o, y: metrics.uar(o.argmax(1), y, num_classes=2)),
}
TASK_MEANS: dict[str, tuple[str, str]] = {"mean_emo": ("mosei_mmf1", "mosei_muar"),
                                          "mean_pkl": ("fiv2_macc", "fiv2_ccc_flat"),
                                          "mean_ah": ("bah_mf1", "bah_uar")}
"""The authors' per-task selection means."""


def _labelled(task: str, labels: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    finite: npt.NDArray[np.bool_] = np.isfinite(labels)
    return finite if finite.ndim == 1 else np.asarray(finite.all(axis=1), dtype=bool)


def score(outputs: Outputs, labels: dict[str, npt.NDArray[np.float32]]) -> dict[str, float]:
    """Every figure of the tasks that have labelled examples and an output, the task means and
    ``mean_all``."""
    out: dict[str, float] = {}
    for name, (task, fn) in _FIGURES.items():
        if task not in outputs:
            continue
        rows = _labelled(task, labels[task])
        if rows.any():
            out[name] = float(fn(outputs[task][rows], labels[task][rows]))
    for mean_name, (a, b) in TASK_MEANS.items():
        if a in out and b in out:
            out[mean_name] = float(np.nanmean([out[a], out[b]]))
    present = [out[k] for k in TASK_MEANS if k in out and math.isfinite(out[k])]
    out["mean_all"] = float(np.mean(present)) if present else math.nan
    return out


def score_with_ci(outputs: Outputs, labels: dict[str, npt.NDArray[np.float32]], *, n_resamples: int,
                  seed: int, confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """The paper's figures with example-level bootstrap intervals (clips of a test set are independent)."""
    out: dict[str, dict[str, float]] = {}
    for name, (task, fn) in _FIGURES.items():
        if task not in outputs:
            continue
        rows = _labelled(task, labels[task])
        o, y = outputs[task][rows], labels[task][rows]
        if not len(y):
            continue
        ci = metrics.bootstrap_ci(_restricted(fn, o, y), len(y), n_resamples=n_resamples, seed=seed,
                                  confidence=confidence)
        out[name] = {"value": ci.value, "low": ci.low, "high": ci.high, "n": len(y)}
    return out


def _restricted(fn: Callable[[Any, Any], float], outputs: npt.NDArray[Any], labels: npt.NDArray[Any],
                ) -> Callable[[npt.NDArray[np.int64]], float]:
    """``fn`` on a resample ``idx`` of the examples."""
    def statistic(idx: npt.NDArray[np.int64]) -> float:
        return float(fn(outputs[idx], labels[idx]))
    return statistic


def _f1(p: npt.NDArray[np.int64], t: npt.NDArray[np.int64], *, average: Literal["macro", "weighted"],
        num_classes: int) -> float:
    return metrics.f1(p, t, average=average, num_classes=num_classes)


def meld_scores(predicted: npt.NDArray[np.int64], target: npt.NDArray[np.int64], *, n_resamples: int,
                seed: int) -> dict[str, Any]:
    """MELD zero-shot macro- and weighted-F1 with bootstrap intervals (items without a label left out)."""
    from affectcache.trainers.mcdm.labels import MELD_CLASSES

    keep = target >= 0
    p, t = predicted[keep], target[keep]
    k = len(MELD_CLASSES)
    out: dict[str, Any] = {}
    averages: tuple[tuple[str, Literal["macro", "weighted"]], ...] = (("meld_mf1", "macro"),
                                                                     ("meld_wf1", "weighted"))
    for name, average in averages:
        ci = metrics.bootstrap_ci(_restricted(partial(_f1, average=average, num_classes=k), p, t), len(t),
                                  n_resamples=n_resamples, seed=seed)
        out[name] = {"value": ci.value, "low": ci.low, "high": ci.high, "n": len(t)}
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    out["confusion"] = confusion.tolist()
    return out
