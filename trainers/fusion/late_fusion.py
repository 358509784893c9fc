"""Late fusion: a weighted average of several models' frame predictions, weights chosen on validation CCC.

Team RAS's ``predictions_fusion.py`` (methods notes, section 1.8): separate weights for valence and
arousal, every subset of up to 3 models, candidate weights from a grid (step 0.05) or Dirichlet(alpha)
samples, the subset and weights with the best mean CCC on the validation split are kept and applied to
the test split.

Two things differ from their script, neither changing what can be found:

- The grid covers the whole simplex for every subset size (231 points for 3 models at step 0.05), not
  only pairs; Dirichlet sampling is the alternative for any size. The corners (each model alone) and the
  uniform average are always candidates.
- Valence and arousal weights are chosen independently. CCC of the fused valence depends on the valence
  weights only, so the best (w_v, w_a) pair is the best w_v with the best w_a; their script scores
  random (w_v, w_a) pairs jointly and can miss it.

Every candidate is scored without forming the fused series: with the predictions' means ``mu``,
covariance ``C`` and covariances with the target ``c`` (population moments, over the frames where the
target is valid and every prediction finite), a weight vector ``w`` gives ``mean = w·mu``,
``var = wᵀCw`` and ``cov = w·c``, so CCC ``= 2 cov / (var + var_y + (mean - mu_y)² + 1e-8)`` costs
``O(M²)`` per candidate instead of ``O(N)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.config import Config
from affectcache.trainers import metrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DIMENSIONS = ("valence", "arousal")
CCC_EPS = 1e-8
"""The authors' ``ccc_1d`` denominator term."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class LateFusionConfig(Config):
    """How candidate weights are drawn and how many models a fusion may combine."""

    max_models: int = 3
    """Largest subset of models combined (the authors: 3)."""

    search: Literal["grid", "dirichlet"] = "grid"
    """``grid``: every weight vector on the simplex with components multiples of ``step``;
    ``dirichlet``: ``n_samples`` Dirichlet(``alpha``) draws per subset (plus corners and uniform)."""

    step: float = 0.05
    """Grid step; 1/step must be a whole number."""

    n_samples: int = 8000
    """Dirichlet draws per subset (the authors: 8,000)."""

    alpha: float = 1.0
    """Dirichlet concentration (1 = uniform over the simplex)."""

    seed: int = 0
    """Seed of the Dirichlet draws."""

    def validate(self) -> list[str]:
        """Every problem of this config."""
        problems: list[str] = []
        if self.max_models < 1:
            problems.append(f"max_models must be >= 1, got {self.max_models}")
        if not 0 < self.step <= 1 or abs(round(1 / self.step) * self.step - 1) > 1e-9:
            problems.append(f"step must divide 1 into whole parts (0.05, 0.1, 0.25, ...), got {self.step}")
        if self.n_samples < 1 or self.alpha <= 0:
            problems.append(f"need n_samples >= 1 and alpha > 0, got {self.n_samples}, {self.alpha}")
        return problems


@dataclass(frozen=True, kw_only=True)
class FusionChoice:
    """One subset of models with its best weights and validation CCCs."""

    models: tuple[str, ...]
    """Model (prediction modality) names, in the order of the weights."""

    weights_valence: tuple[float, ...]
    """Valence weights, summing to 1."""

    weights_arousal: tuple[float, ...]
    """Arousal weights, summing to 1."""

    ccc_valence: float
    """Validation CCC of the fused valence."""

    ccc_arousal: float
    """Validation CCC of the fused arousal."""

    @property
    def ccc_mean(self) -> float:
        """(CCC_v + CCC_a) / 2, the challenge score the choice maximises."""
        return (self.ccc_valence + self.ccc_arousal) / 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (what the fused modality's provenance lists)."""
        return {"models": list(self.models), "weights_valence": list(self.weights_valence),
                "weights_arousal": list(self.weights_arousal), "ccc_valence": self.ccc_valence,
                "ccc_arousal": self.ccc_arousal, "ccc_mean": self.ccc_mean}


@dataclass(frozen=True, kw_only=True)
class LateFusionResult:
    """The chosen fusion and the best weights of every subset tried."""

    best: FusionChoice
    """Highest mean CCC (ties: the smaller subset, then the earlier one in input order)."""

    subsets: tuple[FusionChoice, ...] = field(default=())
    """Every subset's best weights, in the order tried."""

    config: LateFusionConfig = field(default_factory=LateFusionConfig)
    """The search settings."""


def simplex_grid(n_models: int, step: float) -> FloatArray:
    """Every weight vector of ``n_models`` non-negative multiples of ``step`` summing to 1, ``(K, M)``.

    Stars and bars: ``n = 1/step`` units split among ``M`` models, ``C(n + M - 1, M - 1)`` vectors.
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    units = round(1 / step)
    if units < 1 or abs(units * step - 1) > 1e-9:
        raise ValueError(f"step must divide 1 into whole parts, got {step}")
    rows = []
    for bars in itertools.combinations(range(units + n_models - 1), n_models - 1):
        edges = (-1, *bars, units + n_models - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_models)])
    return np.asarray(rows, dtype=np.float64) / units


def dirichlet_weights(n_models: int, n_samples: int, alpha: float, rng: np.random.Generator) -> FloatArray:
    """``n_samples`` Dirichlet(alpha) draws, then each model alone and the uniform average, ``(K, M)``."""
    draws = rng.dirichlet(np.full(n_models, alpha), size=n_samples)
    return np.concatenate([draws, np.eye(n_models), np.full((1, n_models), 1 / n_models)])


def ccc_of_weights(weights: FloatArray, preds: FloatArray, target: FloatArray) -> FloatArray:
    """CCC of ``weights @ preds`` against ``target`` for every row of ``weights``, from moments.

    Args:
        weights: ``(K, M)``.
        preds: ``(M, N)`` predictions of one dimension.
        target: ``(N,)``.

    Returns:
        ``(K,)`` CCCs (population moments, ``1e-8`` in the denominator).
    """
    mu = preds.mean(axis=1)
    centred = preds - mu[:, None]
    mu_y = float(target.mean())
    ty = target - mu_y
    n = preds.shape[1]
    cov = centred @ centred.T / n                                                  # (M, M)
    cov_y = centred @ ty / n                                                       # (M,)
    mean_f = weights @ mu
    var_f = np.einsum("km,mn,kn->k", weights, cov, weights)
    ccc: FloatArray = 2 * (weights @ cov_y) / (var_f + float(ty @ ty) / n + (mean_f - mu_y) ** 2 + CCC_EPS)
    return ccc


def fuse(preds: Sequence[npt.ArrayLike], weights_valence: Sequence[float],
         weights_arousal: Sequence[float]) -> FloatArray:
    """Weighted average of ``(N, 2)`` prediction arrays, valence and arousal with their own weights.

    Weights are non-negative and normalised to sum 1.
    """
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in preds])            # (M, N, 2)
    if stack.ndim != 3 or stack.shape[-1] != 2:
        raise ValueError(f"expected (N, 2) prediction arrays of one length, got shape {stack.shape[1:]}")
    out = np.empty(stack.shape[1:], dtype=np.float64)
    for d, w in enumerate((weights_valence, weights_arousal)):
        wa = np.asarray(w, dtype=np.float64)
        if wa.shape != (stack.shape[0],) or np.any(wa < 0) or wa.sum() <= 0:
            raise ValueError(f"{DIMENSIONS[d]} weights must be {stack.shape[0]} non-negative numbers with a "
                             f"positive sum, got {list(wa)}")
        out[:, d] = (wa / wa.sum()) @ stack[:, :, d]
    return out


def _candidates(size: int, config: LateFusionConfig, rng: np.random.Generator) -> FloatArray:
    if size == 1:
        return np.ones((1, 1))
    if config.search == "grid":
        return simplex_grid(size, config.step)
    return dirichlet_weights(size, config.n_samples, config.alpha, rng)


def search_late_fusion(preds: Mapping[str, npt.ArrayLike], targets: npt.ArrayLike,
                       valid: npt.ArrayLike | None = None,
                       config: LateFusionConfig | None = None) -> LateFusionResult:
    """Choose models and weights maximising the mean validation CCC.

    Args:
        preds: Model name -> ``(N, 2)`` validation predictions, frame-aligned with ``targets``.
        targets: ``(N, 2)`` valence, arousal.
        valid: ``(N,)`` or ``(N, 2)`` bool, frames (per dimension) that count; default every frame with
            a finite target. Frames where a prediction is not finite never count.
        config: Search settings (default :class:`LateFusionConfig`).

    Raises:
        ValueError: No models, arrays of different shapes, or no frame left to score.
    """
    config = config or LateFusionConfig()
    config.check()
    if not preds:
        raise ValueError("late fusion needs at least one prediction array")
    names = list(preds)
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 2:
        raise ValueError(f"targets must be (N, 2) valence, arousal, got shape {y.shape}")
    arrays = {}
    for name in names:
        p = np.asarray(preds[name], dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"predictions of {name!r} have shape {p.shape}, the targets {y.shape}; "
                             "align them on the same frames first")
        arrays[name] = p
    keep = np.isfinite(y)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        keep &= v[:, None] if v.ndim == 1 else v
    for p in arrays.values():
        keep &= np.isfinite(p)
    for d in range(2):
        if keep[:, d].sum() < 2:
            raise ValueError(f"fewer than 2 frames with a valid {DIMENSIONS[d]} target and finite "
                             "predictions")
    rng = np.random.default_rng(config.seed)
    choices = []
    for size in range(1, min(config.max_models, len(names)) + 1):
        for subset in itertools.combinations(names, size):
            cand = _candidates(size, config, rng)
            best_w, best_ccc = [], []
            for d in range(2):
                rows = keep[:, d]
                stack = np.stack([arrays[m][rows, d] for m in subset])
                scores = ccc_of_weights(cand, stack, y[rows, d])
                i = int(np.argmax(scores))
                best_w.append(tuple(float(x) for x in cand[i]))
                # The moment formula above ranks every candidate at once; the reported score is the
                # trainers' metric on the fused series (the same value up to rounding).
                best_ccc.append(float(metrics.ccc(cand[i] @ stack, y[rows, d], eps=CCC_EPS)))
            choices.append(FusionChoice(models=subset, weights_valence=best_w[0], weights_arousal=best_w[1],
                                        ccc_valence=best_ccc[0], ccc_arousal=best_ccc[1]))
    best = choices[0]
    for c in choices[1:]:
        if c.ccc_mean > best.ccc_mean:
            best = c
    return LateFusionResult(best=best, subsets=tuple(choices), config=config)


def apply_late_fusion(preds: Mapping[str, npt.ArrayLike], choice: FusionChoice) -> FloatArray:
    """Fuse ``(N, 2)`` predictions (e.g. of the test split) with a chosen subset and weights."""
    missing = [m for m in choice.models if m not in preds]
    if missing:
        raise ValueError(f"late fusion needs predictions of {missing}; got {sorted(preds)}")
    return fuse([preds[m] for m in choice.models], choice.weights_valence, choice.weights_arousal)
