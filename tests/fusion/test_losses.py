"""Fusion losses against hand computations and an independent CCC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from affectcache.trainers.models.fusion_losses import (
    ccc_mse_loss,
    region_kl,
    sequence_ccc_loss,
    soft_prompt_loss,
    soft_region_labels,
)
from affectcache.trainers.models.kookmin import DEFAULT_CENTRES
from tests.fusion.helpers import ccc, make_batch

CENTRES = torch.tensor(DEFAULT_CENTRES)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    preds = torch.randn(3, 20, 2, generator=g, dtype=torch.float64)
    targets = 0.5 * preds + 0.5 * torch.randn(3, 20, 2, generator=g, dtype=torch.float64)
    valid = torch.rand(3, 20, generator=g) > 0.3
    valid[2] = False
    return preds, targets, valid


def test_ccc_mse_loss_matches_the_hand_formula() -> None:
    preds, targets, valid = _data()
    p, t = preds[valid].numpy(), targets[valid].numpy()
    mse = np.mean((p - t) ** 2)
    expected = (0.7 * (1 - ccc(p[:, 0], t[:, 0])) + 0.3 * (1 - ccc(p[:, 1], t[:, 1]))) + 0.01 * mse
    got = ccc_mse_loss(preds, targets, valid)  # computed in float32, as the authors do
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # weights are normalised by their sum (the authors' `/ (w_v + w_a)`)
    got2 = ccc_mse_loss(preds, targets, valid, v_weight=1.4, a_weight=0.6, mse_weight=0.0)
    assert float(got2) == pytest.approx(expected - 0.01 * np.mean((p - t) ** 2), rel=1e-6)


def test_ccc_mse_loss_falls_back_to_mse_below_min_valid() -> None:
    preds, targets, _ = _data()
    valid = torch.zeros(3, 20, dtype=torch.bool)
    valid[0, :3] = True
    p, t = preds[valid].numpy(), targets[valid].numpy()
    assert float(ccc_mse_loss(preds, targets, valid)) == pytest.approx(np.mean((p - t) ** 2))
    assert float(ccc_mse_loss(preds, targets, torch.zeros_like(valid))) == 0.0


def test_sequence_ccc_loss_is_the_mean_over_windows_of_weighted_one_minus_ccc() -> None:
    preds, targets, valid = _data(1)
    terms = []
    for b in range(2):  # window 2 has no valid frame and is left out
        p, t = preds[b][valid[b]].numpy(), targets[b][valid[b]].numpy()
        terms += [1.0 * (1 - ccc(p[:, 0], t[:, 0])), 2.0 * (1 - ccc(p[:, 1], t[:, 1]))]
    got = sequence_ccc_loss(preds, targets, valid, weights=(1.0, 2.0))
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-9)
    assert float(sequence_ccc_loss(preds, preds, valid)) == pytest.approx(0.0, abs=1e-7)


def test_soft_labels_sum_to_one_and_peak_at_the_nearest_centre() -> None:
    g = torch.Generator().manual_seed(3)
    targets = torch.rand(500, 2, generator=g) * 2 - 1
    for sigma in (0.1, 0.3, 1.0):
        labels = soft_region_labels(targets, CENTRES, sigma)
        assert torch.allclose(labels.sum(-1), torch.ones(500))
        nearest = torch.cdist(targets, CENTRES).argmin(-1)
        assert torch.equal(labels.argmax(-1), nearest)
    # a target far outside the plane still gives a proper distribution (no underflow to zeros)
    far = soft_region_labels(torch.tensor([[40.0, -40.0]]), CENTRES, 0.1)
    assert torch.isclose(far.sum(), torch.tensor(1.0))
    assert int(far.argmax()) == 6


def test_soft_labels_by_hand_at_the_origin() -> None:
    sigma = 0.3
    labels = soft_region_labels(torch.zeros(1, 2), CENTRES, sigma)[0]
    edge, corner = math.exp(-(4 / 9) / (2 * sigma**2)), math.exp(-(8 / 9) / (2 * sigma**2))
    z = 1 + 4 * edge + 4 * corner
    assert float(labels[4]) == pytest.approx(1 / z)                # (0, 0) is the fifth centre
    assert float(labels[1]) == pytest.approx(edge / z)             # (-2/3, 0)
    assert float(labels[0]) == pytest.approx(corner / z)           # (-2/3, -2/3)


def test_region_kl_by_hand() -> None:
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    kl_rows = [0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), 1.0 * math.log(1.0 / 0.5)]
    assert float(region_kl(p, logits, torch.tensor([True, True]))) == pytest.approx(np.mean(kl_rows))
    assert float(region_kl(p, logits, torch.tensor([True, False]))) == pytest.approx(kl_rows[0])
    same = region_kl(p, p.log().clamp_min(-50), torch.tensor([True, True]))
    assert float(same) == pytest.approx(0, abs=1e-6)


def test_soft_prompt_loss_is_ccc_terms_plus_lambda_kl() -> None:
    preds, targets, valid = _data(2)
    logits = torch.randn(3, 20, 9, dtype=torch.float64)
    p, t = preds[valid].numpy(), targets[valid].numpy()
    labels = soft_region_labels(targets, CENTRES.double(), 0.3)
    kl = float(region_kl(labels, logits, valid))
    expected = (1 - ccc(p[:, 0], t[:, 0])) + (1 - ccc(p[:, 1], t[:, 1])) + 0.2 * kl
    got = soft_prompt_loss(preds, logits, targets, valid, CENTRES, sigma=0.3, kl_weight=0.2)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kookmin_loss_trains_the_region_projection() -> None:
    from affectcache.trainers.models.kookmin import KookminConfig, KookminModel

    cfg = KookminConfig(visual_dim=8, audio_dim=6, text_dim=8, hidden=16, heads=2)
    model = KookminModel(cfg, torch.randn(9, 8))
    batch = make_batch({"visual": 8, "audio": 6}, {"audio": 3}, frames=7)
    loss = model.loss(model(batch), torch.rand(2, 7, 2) * 2 - 1, batch.mask)
    loss.backward()
    assert model.to_text.weight.grad is not None
    assert model.to_text.weight.grad.abs().sum() > 0
    assert model.prompt_embeddings.grad is None                     # prompts stay frozen (a buffer)


def test_loss_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"expected preds and targets of shape \(B, T, 2\)"):
        ccc_mse_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        soft_region_labels(torch.zeros(1, 2), CENTRES, 0.0)
