"""Masked evaluation metrics, functional, for numpy arrays and torch tensors alike.

Every function takes ``preds`` and ``target`` of the same shape and an optional boolean ``mask``
(broadcastable to them; false entries are ignored) and returns the same kind of object it was given: a
numpy float (or array, with ``dim``) for numpy input, a tensor for torch input (differentiable, so the
torch path doubles as a loss). numpy input never imports torch.

Regression: :func:`ccc` (``moments`` = ``population`` (default: 1/N everywhere), ``sample`` (1/(N−1)
everywhere) or ``ras`` (Team RAS's evaluation: covariance 1/N, variances 1/(N−1))), :func:`pearson`,
:func:`mae`, :func:`mse`. Classification (integer labels): :func:`accuracy`, :func:`f1` (macro /
weighted), :func:`uar` (macro recall); multi-label (MOSEI's six emotions, binary columns): :func:`mwacc`
(mean weighted accuracy, Zadeh et al. 2018: per class (TP·N/P + TN) / 2N) and :func:`mmf1` (per class
binary macro-F1, averaged).

Statistics over videos: :func:`cluster_bootstrap_ci` resamples whole videos (scipy.stats.bootstrap) and
recomputes a regression metric on the frames of the resampled videos; :func:`paired_wilcoxon` compares
two runs' per-video scores (Wilcoxon signed-rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MOMENTS",
    "REGRESSION_METRICS",
    "BootstrapCI",
    "Moments",
    "PairedTest",
    "accuracy",
    "ccc",
    "cluster_bootstrap_ci",
    "f1",
    "mae",
    "mmf1",
    "mse",
    "mwacc",
    "paired_wilcoxon",
    "pearson",
    "per_group_scores",
    "uar",
]

Moments: TypeAlias = Literal["population", "sample", "ras"]
MOMENTS: tuple[str, ...] = get_args(Moments)
Array: TypeAlias = Any
"""A numpy array or a torch tensor (the functions return the kind they are given)."""


def _is_torch(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _prepare(preds: Array, target: Array, mask: Array | None) -> tuple[Array, Array, Array, bool]:
    """Same-kind float inputs and a float mask broadcast to their shape."""
    torch_in = _is_torch(preds) or _is_torch(target)
    if torch_in:
        import torch

        p = torch.as_tensor(preds)
        t = torch.as_tensor(target, device=p.device)
        dtype = torch.promote_types(torch.promote_types(p.dtype, t.dtype), torch.float32)
        p, t = p.to(dtype), t.to(dtype)
        if p.shape != t.shape:
            raise ValueError(f"preds and target must have the same shape, got {tuple(p.shape)} and "
                             f"{tuple(t.shape)}")
        m = (torch.ones_like(p) if mask is None
             else torch.as_tensor(mask, device=p.device).to(torch.bool).expand_as(p).to(dtype))
        # Masked entries may hold anything (NaN labels): zero them so they cannot leak into sums.
        p = torch.where(m > 0, p, torch.zeros_like(p))
        t = torch.where(m > 0, t, torch.zeros_like(t))
        return p, t, m, True
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"preds and target must have the same shape, got {p.shape} and {t.shape}")
    m = (np.ones_like(p) if mask is None
         else np.broadcast_to(np.asarray(mask, dtype=bool), p.shape).astype(np.float64))
    return np.where(m > 0, p, 0.0), np.where(m > 0, t, 0.0), m, False


def _sum(x: Array, dim: int | tuple[int, ...] | None, torch_in: bool, *, keep: bool = False) -> Array:
    if dim is None:
        return x.sum()
    return x.sum(dim=dim, keepdim=keep) if torch_in else x.sum(axis=dim, keepdims=keep)


def _finish(value: Array, count: Array, minimum: int, torch_in: bool) -> Array:
    """NaN where fewer than ``minimum`` entries were valid; numpy 0-d results as numpy scalars."""
    if torch_in:
        import torch

        return torch.where(count >= minimum, value, torch.full_like(value, math.nan))
    out = np.where(count >= minimum, value, np.nan)
    return out[()] if np.ndim(out) == 0 else out


def _clamp1(x: Array, torch_in: bool) -> Array:
    return x.clamp(min=1.0) if torch_in else np.maximum(x, 1.0)


def _moments(p: Array, t: Array, m: Array, dim: int | tuple[int, ...] | None, torch_in: bool,
             ) -> tuple[Array, Array, Array, Array, Array, Array, Array]:
    """Count, means and centred sums of squares/products over the valid entries."""
    n_keep = _clamp1(_sum(m, dim, torch_in, keep=True), torch_in)
    mp = _sum(p, dim, torch_in, keep=True) / n_keep
    mt = _sum(t, dim, torch_in, keep=True) / n_keep
    dp = (p - mp) * m
    dt = (t - mt) * m
    n = _sum(m, dim, torch_in)
    spp = _sum(dp * dp, dim, torch_in)
    stt = _sum(dt * dt, dim, torch_in)
    spt = _sum(dp * dt, dim, torch_in)
    return n, _clamp1(n, torch_in), mp.reshape(n.shape), mt.reshape(n.shape), spp, stt, spt


def ccc(preds: Array, target: Array, mask: Array | None = None, *, dim: int | tuple[int, ...] | None = None,
        moments: Moments = "population", eps: float = 0.0) -> Array:
    """Concordance correlation coefficient 2·cov / (var_p + var_t + (mean_p − mean_t)²) over valid entries.

    Args:
        preds: Estimates.
        target: Reference values (same shape).
        mask: Validity, broadcastable to ``preds``; None = all valid.
        dim: Axis (or axes) to reduce; None reduces everything to one value.
        moments: ``population`` (1/N), ``sample`` (1/(N−1)) or ``ras`` (covariance 1/N, variances 1/(N−1)).
        eps: Added to the denominator (RAS's loss: 1e-8), so constant inputs give 0 instead of NaN.

    Returns:
        CCC per reduced slice; NaN where fewer than 1 (population) or 2 (sample, ras) entries are valid.
    """
    if moments not in MOMENTS:
        raise ValueError(f"unknown moments {moments!r}; choose one of {MOMENTS}")
    p, t, m, torch_in = _prepare(preds, target, mask)
    n, n_safe, mp, mt, spp, stt, spt = _moments(p, t, m, dim, torch_in)
    n1 = _clamp1(n - 1, torch_in)
    cov_div = n_safe if moments in ("population", "ras") else n1
    var_div = n_safe if moments == "population" else n1
    with np.errstate(invalid="ignore", divide="ignore"):  # undefined slices become NaN below
        value = 2 * (spt / cov_div) / (spp / var_div + stt / var_div + (mp - mt) ** 2 + eps)
    return _finish(value, n, 1 if moments == "population" else 2, torch_in)


def pearson(preds: Array, target: Array, mask: Array | None = None, *,
            dim: int | tuple[int, ...] | None = None) -> Array:
    """Pearson correlation over valid entries (NaN with fewer than 2, or a constant input)."""
    p, t, m, torch_in = _prepare(preds, target, mask)
    n, _, _, _, spp, stt, spt = _moments(p, t, m, dim, torch_in)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = spt / (spp * stt) ** 0.5
    return _finish(value, n, 2, torch_in)


def mae(preds: Array, target: Array, mask: Array | None = None, *,
        dim: int | tuple[int, ...] | None = None) -> Array:
    """Mean absolute error over valid entries (NaN when none is valid)."""
    p, t, m, torch_in = _prepare(preds, target, mask)
    n = _sum(m, dim, torch_in)
    total = _sum(abs(p - t) * m, dim, torch_in)
    return _finish(total / _clamp1(n, torch_in), n, 1, torch_in)


def mse(preds: Array, target: Array, mask: Array | None = None, *,
        dim: int | tuple[int, ...] | None = None) -> Array:
    """Mean squared error over valid entries (NaN when none is valid)."""
    p, t, m, torch_in = _prepare(preds, target, mask)
    n = _sum(m, dim, torch_in)
    total = _sum((p - t) ** 2 * m, dim, torch_in)
    return _finish(total / _clamp1(n, torch_in), n, 1, torch_in)


# ---- classification ---------------------------------------------------------------------------------
def _labels(preds: Array, target: Array, mask: Array | None,
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer label vectors (torch tensors are detached to numpy: these are evaluation metrics)."""
    def to_np(x: Array) -> npt.NDArray[Any]:
        return np.asarray(x.detach().cpu().numpy() if _is_torch(x) else x)

    p, t = to_np(preds).reshape(-1), to_np(target).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"preds and target must have the same number of labels, got {p.size} and {t.size}")
    keep = np.ones(p.shape, bool) if mask is None else to_np(mask).astype(bool).reshape(-1)
    return p[keep].astype(np.int64), t[keep].astype(np.int64)


def _confusion(p: npt.NDArray[np.int64], t: npt.NDArray[np.int64], num_classes: int | None,
               ) -> npt.NDArray[np.float64]:
    largest = max(int(p.max(initial=-1)), int(t.max(initial=-1)))
    k = int(num_classes if num_classes is not None else largest + 1)
    if k < 1:
        raise ValueError("no labels to score (every entry masked?)")
    if (p < 0).any() or (t < 0).any() or (p >= k).any() or (t >= k).any():
        raise ValueError(f"labels must lie in 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.float64)


def accuracy(preds: Array, target: Array, mask: Array | None = None) -> float:
    """Share of valid entries whose predicted label equals the target label."""
    p, t = _labels(preds, target, mask)
    return float((p == t).mean()) if p.size else math.nan


def f1(preds: Array, target: Array, mask: Array | None = None, *,
       average: Literal["macro", "weighted"] = "macro", num_classes: int | None = None) -> float:
    """F1 per class averaged over classes: ``macro`` (plain mean over the classes present in preds or
    target) or ``weighted`` (by each class's count in the target). Undefined per-class F1 counts as 0."""
    p, t = _labels(preds, target, mask)
    cm = _confusion(p, t, num_classes)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    denom = support + cm.sum(axis=0)
    per_class = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    if average == "weighted":
        return float((per_class * support).sum() / support.sum()) if support.sum() else math.nan
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")
    present = denom > 0
    return float(per_class[present].mean()) if present.any() else math.nan


def uar(preds: Array, target: Array, mask: Array | None = None, *, num_classes: int | None = None) -> float:
    """Unweighted average recall: recall per class present in the target, averaged."""
    p, t = _labels(preds, target, mask)
    cm = _confusion(p, t, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean()) if present.any() else math.nan


def _binary_columns(preds: Array, target: Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    p, t = (np.asarray(x.detach().cpu().numpy() if _is_torch(x) else x) for x in (preds, target))
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"multi-label metrics need (n, classes) 0/1 arrays of one shape, got {p.shape} and "
                         f"{t.shape}")
    return (p > 0).astype(np.int64), (t > 0).astype(np.int64)


def mwacc(preds: Array, target: Array) -> float:
    """MOSEI's mean weighted accuracy: per class (column) (TP·N/P + TN) / 2N, averaged over classes.

    ``preds`` and ``target`` are (n, classes) binary (anything > 0 counts as positive). A class with no
    positives or no negatives in the target has no weighted accuracy and is left out of the mean.
    """
    p, t = _binary_columns(preds, target)
    values = []
    for c in range(p.shape[1]):
        pos, neg = t[:, c] == 1, t[:, c] == 0
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        if n_pos == 0 or n_neg == 0:
            continue
        tp = float((p[pos, c] == 1).sum())
        tn = float((p[neg, c] == 0).sum())
        values.append((tp * n_neg / n_pos + tn) / (2 * n_neg))
    return float(np.mean(values)) if values else math.nan


def mmf1(preds: Array, target: Array) -> float:
    """MOSEI's mean macro-F1: per class (column) the binary problem's macro-F1 (mean of the positive and
    negative class F1), averaged over classes."""
    p, t = _binary_columns(preds, target)
    return float(np.mean([f1(p[:, c], t[:, c], average="macro", num_classes=2) for c in range(p.shape[1])]))


# ---- statistics over videos ---------------------------------------------------------------------------
REGRESSION_METRICS: tuple[str, ...] = ("ccc", "pearson", "mae", "mse")


@dataclass(frozen=True, kw_only=True)
class BootstrapCI:
    """A metric on all frames with a cluster-bootstrap confidence interval over videos."""

    value: float
    """The metric on every valid frame (videos concatenated)."""
    low: float
    """Lower bound of the interval."""
    high: float
    """Upper bound of the interval."""
    confidence: float
    """Confidence level of the interval."""
    n_groups: int
    """Videos (clusters) resampled."""


def _group_sums(preds: npt.NDArray[np.float64], target: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_],
                groups: npt.NDArray[np.int64], n_groups: int) -> npt.NDArray[np.float64]:
    """Per group: n, Σp, Σt, Σp², Σt², Σpt, Σ|p−t| (the sufficient statistics of every regression metric)."""
    p, t, g = preds[valid], target[valid], groups[valid]
    cols = [np.ones_like(p), p, t, p * p, t * t, p * t, np.abs(p - t)]
    return np.stack([np.bincount(g, weights=c, minlength=n_groups) for c in cols], axis=-1)


def _metric_from_sums(s: npt.NDArray[np.float64], metric: str, moments: Moments) -> npt.NDArray[np.float64]:
    n, sp, st, spp, stt, spt, sae = (s[..., i] for i in range(7))
    with np.errstate(invalid="ignore", divide="ignore"):
        mp, mt = sp / n, st / n
        cpp, ctt, cpt = spp - n * mp * mp, stt - n * mt * mt, spt - n * mp * mt
        if metric == "ccc":
            cov_div = n if moments in ("population", "ras") else n - 1
            var_div = n if moments == "population" else n - 1
            out = 2 * cpt / cov_div / (cpp / var_div + ctt / var_div + (mp - mt) ** 2)
        elif metric == "pearson":
            out = cpt / np.sqrt(cpp * ctt)
        elif metric == "mae":
            out = sae / n
        elif metric == "mse":
            out = (spp - 2 * spt + stt) / n
        else:
            raise ValueError(f"unknown metric {metric!r}; choose one of {REGRESSION_METRICS}")
    return np.asarray(out, dtype=np.float64)


def per_group_scores(preds: npt.ArrayLike, target: npt.ArrayLike, groups: npt.ArrayLike,
                     mask: npt.ArrayLike | None = None, *, metric: str = "ccc",
                     moments: Moments = "population") -> npt.NDArray[np.float64]:
    """A regression metric per group (video): ``groups`` holds each entry's group index 0..G−1."""
    p, t = np.asarray(preds, np.float64).reshape(-1), np.asarray(target, np.float64).reshape(-1)
    g = np.asarray(groups, np.int64).reshape(-1)
    valid = np.ones(p.shape, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    n_groups = int(g.max(initial=-1)) + 1
    return _metric_from_sums(_group_sums(p, t, valid, g, n_groups), metric, moments)


def cluster_bootstrap_ci(preds: npt.ArrayLike, target: npt.ArrayLike, groups: npt.ArrayLike,
                         mask: npt.ArrayLike | None = None, *, metric: str = "ccc",
                         moments: Moments = "population", confidence: float = 0.95, n_resamples: int = 1000,
                         seed: int = 0, method: Literal["percentile", "basic", "BCa"] = "percentile",
                         ) -> BootstrapCI:
    """A regression metric over all valid entries, with a bootstrap interval that resamples whole groups.

    Frames of one video are correlated, so resampling frames would understate the uncertainty; each
    resample draws videos with replacement and recomputes the metric on all their frames (from per-video
    sufficient statistics, so a resample costs O(videos)). Uses ``scipy.stats.bootstrap``.

    Args:
        preds: (n,) estimates.
        target: (n,) references.
        groups: (n,) group (video) index of each entry, 0..G−1.
        mask: (n,) validity; None = all valid.
        metric: ``ccc``, ``pearson``, ``mae`` or ``mse``.
        moments: CCC moments (see :func:`ccc`).
        confidence: Confidence level.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling.
        method: scipy's interval method.
    """
    from scipy.stats import bootstrap

    p, t = np.asarray(preds, np.float64).reshape(-1), np.asarray(target, np.float64).reshape(-1)
    g = np.asarray(groups, np.int64).reshape(-1)
    valid = np.ones(p.shape, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    present = np.unique(g[valid])
    # Re-index to the groups that hold valid entries: a video without any cannot move the metric.
    remap = np.full(int(g.max(initial=-1)) + 1, -1, dtype=np.int64)
    remap[present] = np.arange(present.size)
    sums = _group_sums(p, t, valid, np.where(valid, remap[g], 0), present.size)
    value = float(_metric_from_sums(sums.sum(axis=0), metric, moments))
    if present.size < 2:
        return BootstrapCI(value=value, low=math.nan, high=math.nan, confidence=confidence,
                           n_groups=int(present.size))

    def statistic(idx: npt.NDArray[np.int64], axis: int = -1) -> npt.NDArray[np.float64]:
        idx = np.moveaxis(np.asarray(idx, dtype=np.int64), axis, -1)
        counts = np.apply_along_axis(np.bincount, -1, idx, minlength=present.size) if idx.ndim > 1 \
            else np.bincount(idx, minlength=present.size)
        return _metric_from_sums(counts.astype(np.float64) @ sums, metric, moments)

    res = bootstrap((np.arange(present.size),), statistic, n_resamples=n_resamples,
                    confidence_level=confidence, method=method, vectorized=True,
                    rng=np.random.default_rng(seed))
    return BootstrapCI(value=value, low=float(res.confidence_interval.low),
                       high=float(res.confidence_interval.high), confidence=confidence,
                       n_groups=int(present.size))


@dataclass(frozen=True, kw_only=True)
class PairedTest:
    """Wilcoxon signed-rank test of two runs' per-video scores."""

    n: int
    """Videos scored by both runs."""
    mean_difference: float
    """Mean of ``a − b`` over those videos."""
    statistic: float
    """The test statistic."""
    p_value: float
    """Two-sided p-value."""


def paired_wilcoxon(scores_a: Sequence[float] | npt.ArrayLike, scores_b: Sequence[float] | npt.ArrayLike,
                    ) -> PairedTest:
    """Compare two runs' per-video scores (NaN pairs dropped) with ``scipy.stats.wilcoxon``."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(scores_a, np.float64).reshape(-1), np.asarray(scores_b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one value per video in both runs, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size == 0:
        raise ValueError("no video has a finite score in both runs")
    diff = a - b
    if not np.any(diff):
        return PairedTest(n=int(a.size), mean_difference=0.0, statistic=0.0, p_value=1.0)
    res = wilcoxon(a, b)
    return PairedTest(n=int(a.size), mean_difference=float(diff.mean()), statistic=float(res.statistic),
                      p_value=float(res.pvalue))
