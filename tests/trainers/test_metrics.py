"""Every metric against an independent reference (torchmetrics, scikit-learn, scipy) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectcache.trainers import metrics

torchmetrics = pytest.importorskip("torchmetrics.functional")
sk = pytest.importorskip("sklearn.metrics")


def _data(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, n)
    preds = 0.6 * target + 0.3 * rng.normal(size=n) + 0.1
    mask = rng.random(n) > 0.2
    return preds, target, mask


def _ras_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Team RAS's metrics.py convention, written out: covariance 1/N, variances 1/(N-1)."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var(ddof=1) + y.var(ddof=1) + (mx - my) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccc_matches_torchmetrics_and_formulas(seed: int) -> None:
    p, t, m = _data(seed)
    # torchmetrics' CCC uses sample moments and has no mask: compare on the valid entries.
    ref_sample = float(torchmetrics.concordance_corrcoef(torch.tensor(p[m]), torch.tensor(t[m])))
    assert metrics.ccc(p, t, m, moments="sample") == pytest.approx(ref_sample, abs=1e-6)
    x, y = p[m], t[m]
    pop = 2 * np.cov(x, y, ddof=0)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert metrics.ccc(p, t, m) == pytest.approx(pop, abs=1e-6)
    assert metrics.ccc(p, t, m, moments="ras") == pytest.approx(_ras_reference(x, y), abs=1e-6)
    # The three conventions differ measurably on 400 frames (so the option is not a no-op).
    assert abs(metrics.ccc(p, t, m, moments="ras") - pop) > 1e-5


def test_torch_path_equals_numpy_and_is_differentiable() -> None:
    p, t, m = _data(3)
    pt = torch.tensor(p, requires_grad=True)
    value = metrics.ccc(pt, torch.tensor(t), torch.tensor(m))
    assert float(value.detach()) == pytest.approx(float(metrics.ccc(p, t, m)), abs=1e-9)
    (1 - value).backward()
    assert pt.grad is not None
    assert torch.isfinite(pt.grad).all()
    assert float(pt.grad[~torch.tensor(m)].abs().max()) == 0.0  # masked entries get no gradient
    for fn in (metrics.pearson, metrics.mae, metrics.mse):
        assert float(fn(torch.tensor(p), torch.tensor(t), torch.tensor(m))) == pytest.approx(
            float(fn(p, t, m)), abs=1e-9)


def test_reduction_over_an_axis_with_nan_labels_masked() -> None:
    rng = np.random.default_rng(4)
    p = rng.normal(size=(3, 50, 2))
    t = rng.normal(size=(3, 50, 2)) + p
    m = rng.random((3, 50)) > 0.3
    t_nan = np.where(m[..., None], t, np.nan)  # invalid labels hold NaN: the mask must keep them out
    per_window = metrics.ccc(p, t_nan, m[..., None], dim=1)
    assert per_window.shape == (3, 2)
    for b in range(3):
        for d in range(2):
            assert per_window[b, d] == pytest.approx(metrics.ccc(p[b, m[b], d], t[b, m[b], d]), abs=1e-12)
    torch_out = metrics.ccc(torch.tensor(p), torch.tensor(t_nan), torch.tensor(m)[..., None], dim=1)
    np.testing.assert_allclose(torch_out.numpy(), per_window, atol=1e-9)


def test_regression_references() -> None:
    from scipy.stats import pearsonr

    p, t, m = _data(5)
    assert metrics.pearson(p, t, m) == pytest.approx(pearsonr(p[m], t[m]).statistic, abs=1e-6)
    assert metrics.mae(p, t, m) == pytest.approx(sk.mean_absolute_error(t[m], p[m]), abs=1e-6)
    assert metrics.mse(p, t, m) == pytest.approx(sk.mean_squared_error(t[m], p[m]), abs=1e-6)
    assert float(torchmetrics.pearson_corrcoef(torch.tensor(p[m]), torch.tensor(t[m]))) == pytest.approx(
        metrics.pearson(p, t, m), abs=1e-6)


def test_undefined_values_are_nan() -> None:
    assert np.isnan(metrics.ccc(np.ones(3), np.ones(3), np.zeros(3, bool)))
    assert np.isnan(metrics.ccc(np.array([1.0]), np.array([2.0]), moments="sample"))
    assert np.isnan(metrics.mae(np.ones(2), np.ones(2), np.zeros(2, bool)))
    with pytest.raises(ValueError, match="moments"):
        metrics.ccc(np.ones(2), np.ones(2), moments="biased")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 5, 300))
    m = rng.random(300) > 0.1
    assert metrics.accuracy(p, t, m) == pytest.approx(sk.accuracy_score(t[m], p[m]), abs=1e-6)
    for avg in ("macro", "weighted"):
        assert metrics.f1(p, t, m, average=avg) == pytest.approx(
            sk.f1_score(t[m], p[m], average=avg), abs=1e-6)
    assert metrics.uar(p, t, m) == pytest.approx(sk.balanced_accuracy_score(t[m], p[m]), abs=1e-6)
    assert metrics.uar(torch.tensor(p), torch.tensor(t), torch.tensor(m)) == pytest.approx(
        sk.recall_score(t[m], p[m], average="macro"), abs=1e-6)


def test_mosei_multilabel_references() -> None:
    rng = np.random.default_rng(7)
    t = (rng.random((400, 6)) < 0.3).astype(int)
    p = np.where(rng.random((400, 6)) < 0.7, t, 1 - t)
    wa = []
    for c in range(6):
        tp = ((p[:, c] == 1) & (t[:, c] == 1)).sum()
        tn = ((p[:, c] == 0) & (t[:, c] == 0)).sum()
        n_pos, n_neg = (t[:, c] == 1).sum(), (t[:, c] == 0).sum()
        wa.append((tp * n_neg / n_pos + tn) / (2 * n_neg))
        # Zadeh's weighted accuracy is the binary balanced accuracy.
        assert wa[-1] == pytest.approx(sk.balanced_accuracy_score(t[:, c], p[:, c]), abs=1e-9)
    assert metrics.mwacc(p, t) == pytest.approx(np.mean(wa), abs=1e-6)
    ref = np.mean([sk.f1_score(t[:, c], p[:, c], average="macro") for c in range(6)])
    assert metrics.mmf1(p, t) == pytest.approx(ref, abs=1e-6)


def test_cluster_bootstrap_ci_and_per_video_scores() -> None:
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(20), 50)
    t = rng.uniform(-1, 1, groups.size)
    p = t + rng.normal(scale=0.5, size=groups.size)
    m = rng.random(groups.size) > 0.1
    ci = metrics.cluster_bootstrap_ci(p, t, groups, m, n_resamples=300, seed=1)
    assert ci.value == pytest.approx(metrics.ccc(p, t, m), abs=1e-9)
    assert ci.low < ci.value < ci.high
    assert ci.n_groups == 20
    # The interval really comes from resampled videos: a brute-force resample reproduces a value in it.
    idx = np.random.default_rng(0).integers(0, 20, 20)
    sel = np.concatenate([np.flatnonzero((groups == g) & m) for g in idx])
    brute = metrics.ccc(p[sel], t[sel])
    assert ci.low - 0.1 < brute < ci.high + 0.1
    per_video = metrics.per_group_scores(p, t, groups, m)
    assert per_video.shape == (20,)
    assert per_video[3] == pytest.approx(metrics.ccc(p[(groups == 3) & m], t[(groups == 3) & m]), abs=1e-9)
    for name, fn in (("mae", metrics.mae), ("mse", metrics.mse), ("pearson", metrics.pearson)):
        assert metrics.per_group_scores(p, t, groups, m, metric=name)[5] == pytest.approx(
            fn(p[(groups == 5) & m], t[(groups == 5) & m]), abs=1e-9)


def test_paired_wilcoxon_matches_scipy() -> None:
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(9)
    a = rng.uniform(0.3, 0.7, 30)
    b = a - rng.uniform(0.0, 0.1, 30)
    res = metrics.paired_wilcoxon(a, b)
    assert res.p_value == pytest.approx(wilcoxon(a, b).pvalue, abs=1e-12)
    assert res.mean_difference > 0
    assert res.p_value < 0.01
