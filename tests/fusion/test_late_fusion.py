"""Late fusion: the weight search finds planted weights; moment-based CCC equals the direct one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.fusion.late_fusion import (
    LateFusionConfig,
    apply_late_fusion,
    ccc_of_weights,
    fuse,
    search_late_fusion,
    simplex_grid,
)
from tests.fusion.helpers import ccc


def _planted(n: int = 3000, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four models; valence = 0.3·m1 + 0.7·m2, arousal = 0.25·m1 + 0.5·m2 + 0.25·m3; m4 is a distractor
    correlated with both targets."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(3, n, 2)) * [0.3, 0.4]
    preds = {f"m{i + 1}": s[i] for i in range(3)}
    targets = np.stack([0.3 * s[0, :, 0] + 0.7 * s[1, :, 0],
                        0.25 * s[0, :, 1] + 0.5 * s[1, :, 1] + 0.25 * s[2, :, 1]], axis=1)
    preds["m4"] = targets + rng.normal(scale=0.2, size=targets.shape)
    return preds, targets


def test_grid_search_finds_the_planted_weights() -> None:
    preds, targets = _planted()
    result = search_late_fusion(preds, targets)
    best = result.best
    assert best.models == ("m1", "m2", "m3")
    assert best.weights_valence == pytest.approx((0.3, 0.7, 0.0), abs=1e-12)
    assert best.weights_arousal == pytest.approx((0.25, 0.5, 0.25), abs=1e-12)
    assert best.ccc_valence == pytest.approx(1.0, abs=1e-6)
    assert best.ccc_arousal == pytest.approx(1.0, abs=1e-6)
    # every subset of up to 3 of the 4 models was tried: 4 + 6 + 4
    assert len(result.subsets) == 14
    # the distractor alone is decent but worse than the planted mix
    alone = next(c for c in result.subsets if c.models == ("m4",))
    assert 0.5 < alone.ccc_mean < 0.99


def test_dirichlet_search_gets_close_to_the_planted_weights() -> None:
    preds, targets = _planted()
    config = LateFusionConfig(search="dirichlet", n_samples=8000)
    best = search_late_fusion(preds, targets, config=config).best
    assert best.models == ("m1", "m2", "m3")
    assert best.weights_valence == pytest.approx((0.3, 0.7, 0.0), abs=0.05)
    assert best.weights_arousal == pytest.approx((0.25, 0.5, 0.25), abs=0.05)
    assert best.ccc_mean > 0.99


def test_max_models_limits_the_subsets() -> None:
    preds, targets = _planted()
    result = search_late_fusion(preds, targets, config=LateFusionConfig(max_models=2))
    assert max(len(c.models) for c in result.subsets) == 2
    assert len(result.best.models) <= 2
    assert result.best.ccc_mean < 1.0


def test_invalid_frames_do_not_count() -> None:
    preds, targets = _planted(n=1000)
    ref = search_late_fusion(preds, targets).best
    corrupted = {k: v.copy() for k, v in preds.items()}
    valid = np.ones((1000, 2), dtype=bool)
    corrupted["m4"][:100] = 5.0          # garbage where the targets are invalid
    valid[:100] = False
    targets2 = targets.copy()
    targets2[100:110, 1] = np.nan         # missing arousal labels only
    corrupted["m2"][200, 0] = np.inf      # a broken prediction frame
    got = search_late_fusion(corrupted, targets2, valid).best
    assert got.models == ref.models
    assert got.weights_valence == ref.weights_valence
    assert got.weights_arousal == ref.weights_arousal


def test_moment_ccc_equals_direct_ccc_of_the_fused_series() -> None:
    rng = np.random.default_rng(1)
    preds = rng.normal(size=(3, 200)) + np.array([[0.1], [0.3], [-0.2]])
    target = rng.normal(size=200) * 0.5 + 0.1
    weights = rng.dirichlet(np.ones(3), size=10)
    got = ccc_of_weights(weights, preds, target)
    expected = [ccc(w @ preds, target) for w in weights]
    assert got == pytest.approx(expected, rel=1e-10)


def test_fuse_uses_separate_normalised_weights_per_dimension() -> None:
    a = np.array([[1.0, 10.0], [2.0, 20.0]])
    b = np.array([[3.0, 30.0], [4.0, 40.0]])
    out = fuse([a, b], [1, 3], [2, 2])
    assert out.tolist() == [[2.5, 20.0], [3.5, 30.0]]
    with pytest.raises(ValueError, match="valence weights must be 2 non-negative numbers"):
        fuse([a, b], [1, -1], [1, 1])
    preds, targets = _planted(n=500)
    choice = search_late_fusion(preds, targets).best
    fused = apply_late_fusion(preds, choice)
    assert ccc(fused[:, 0], targets[:, 0]) == pytest.approx(choice.ccc_valence, abs=1e-6)


def test_simplex_grid_counts_and_sums() -> None:
    grid = simplex_grid(3, 0.05)
    assert grid.shape == (math.comb(22, 2), 3) == (231, 3)
    assert np.allclose(grid.sum(1), 1)
    assert len({tuple(np.round(r, 9)) for r in grid}) == 231
    assert simplex_grid(2, 0.25).tolist() == [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]]


def test_bad_inputs_are_named() -> None:
    preds, targets = _planted(n=50)
    preds["m2"] = preds["m2"][:40]
    with pytest.raises(ValueError, match=r"predictions of 'm2' have shape \(40, 2\), the targets \(50, 2\)"):
        search_late_fusion(preds, targets)
    with pytest.raises(ConfigError, match="step must divide 1"):
        LateFusionConfig.from_dict({"step": 0.3})
    with pytest.raises(ValueError, match="fewer than 2 frames with a valid valence"):
        search_late_fusion({"a": np.zeros((3, 2))}, np.full((3, 2), np.nan))
