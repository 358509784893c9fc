"""Dual-branch GradNorm against a hand computation on a two-task toy."""

from __future__ import annotations

import math

import pytest
import torch

from affectcache.trainers.mcdm.gradnorm import DualGradNorm, GradNormConfig, Wallet


def toy_losses(theta: torch.Tensor, head: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_emo = 2·θ0 + θ1 (∇θ = (2, 1)); L_per = θ0² · (head only scales, not shared)."""
    return {"emo_sup": 2 * theta[0] + theta[1], "per_sup": theta[0] ** 2 * head}


def test_weight_update_matches_a_hand_computation() -> None:
    gradnorm = DualGradNorm()
    head = torch.tensor(1.0, requires_grad=True)

    # Step 1 at θ = (1, 2): L = (4, 1), ‖∇θ L‖ = (√5, 2); first losses recorded, so r = (1, 1).
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    total = gradnorm.combine(toy_losses(theta, head), [theta])
    # G = (√5, 2), target = mean(G) for both: sign(G − target) = (+1, −1).
    w_emo, w_per = 1 - 0.01 * math.sqrt(5), 1 + 0.01 * 2
    w_emo, w_per = 3 * w_emo / (w_emo + w_per), 3 * w_per / (w_emo + w_per)
    assert gradnorm.weights["emo_sup"] == pytest.approx(1.4681919458536992, abs=1e-7)
    got = (gradnorm.weights["emo_sup"], gradnorm.weights["per_sup"])
    assert got == pytest.approx((w_emo, w_per), abs=1e-7)
    assert gradnorm.weights["ah_sup"] == 1.0            # absent: untouched (the authors' rescaling)
    assert total.item() == pytest.approx(4 * w_emo + 1 * w_per, rel=1e-6)
    # The total treats the new weights as constants: ∇θ total = w_emo ∇L_emo + w_per ∇L_per.
    total.backward()
    torch.testing.assert_close(theta.grad, torch.tensor([2 * w_emo + 2 * w_per, w_emo]))

    # Step 2 at θ = (0.5, 1): L = (2, 0.25), r = (0.5, 0.25), ‖∇θ L‖ = (√5, 1).
    theta = torch.tensor([0.5, 1.0], requires_grad=True)
    gradnorm.combine(toy_losses(theta, head), [theta])
    g = (w_emo * math.sqrt(5), w_per * 1.0)                       # (3.28298, 1.53181)
    mean_r = (0.5 + 0.25) / 2
    target = ((g[0] + g[1]) / 2 * (0.5 / mean_r) ** 1.25,        # 3.44922 > G_emo: weight rises
              (g[0] + g[1]) / 2 * (0.25 / mean_r) ** 1.25)       # 1.45022 < G_per: weight falls
    assert g[0] < target[0]
    assert g[1] > target[1]
    w_emo, w_per = w_emo + 0.01 * math.sqrt(5), w_per - 0.01 * 1.0
    w_emo, w_per = 3 * w_emo / (w_emo + w_per), 3 * w_per / (w_emo + w_per)
    got = (gradnorm.weights["emo_sup"], gradnorm.weights["per_sup"])
    assert got == pytest.approx((w_emo, w_per), abs=1e-7)
    assert gradnorm.weights["emo_sup"] == pytest.approx(1.4844364112534134, abs=1e-7)


def test_wallet_budgets_when_every_component_is_active() -> None:
    gradnorm = DualGradNorm()
    assert sum(gradnorm.supervised.weights.values()) == pytest.approx(3.0)
    assert sum(gradnorm.pseudo.weights.values()) == pytest.approx(0.9)
    theta = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    for step in range(3):
        comps = {k: (theta * torch.tensor([1.0 + i, 2.0, 0.5 * step + 0.1])).pow(2).sum()
                 for i, k in enumerate(["emo_sup", "per_sup", "ah_sup", "emo_ssl", "per_ssl", "ah_ssl"])}
        gradnorm.combine(comps, [theta])
        assert sum(gradnorm.supervised.weights.values()) == pytest.approx(3.0)
        assert sum(gradnorm.pseudo.weights.values()) == pytest.approx(0.9)


def test_floor_bounds_a_weight_before_rescaling() -> None:
    wallet = Wallet.create(["a", "b"], start=1.0, budget=2.0, alpha=1.0, lr=10.0, floor=1e-3)
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(1.0)}
    wallet.update(losses, {"a": 1.0, "b": 0.5})   # G = (1, 0.5): a falls by 10 -> floor, b rises by 5
    assert wallet.weights["a"] == pytest.approx(2 * 1e-3 / (1e-3 + 6.0))
    assert wallet.weights["b"] == pytest.approx(2 * 6.0 / (1e-3 + 6.0))


def test_disabled_gradnorm_keeps_the_initial_weights_and_state_round_trips() -> None:
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    fixed = DualGradNorm(GradNormConfig(enabled=False))
    total = fixed.combine({"emo_sup": theta.sum(), "per_ssl": theta.sum()}, [theta])
    assert total.item() == pytest.approx(3.0 * 1.0 + 3.0 * 0.3)
    adaptive = DualGradNorm()
    adaptive.combine(toy_losses(theta, torch.tensor(1.0)), [theta])
    restored = DualGradNorm()
    restored.load_state_dict(adaptive.state_dict())
    assert restored.weights == adaptive.weights
    assert restored.supervised.initial_losses == {"emo_sup": 4.0, "per_sup": 1.0}


def test_non_finite_component_is_an_error() -> None:
    theta = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(FloatingPointError, match="per_sup"):
        DualGradNorm().combine({"per_sup": theta.sum() * float("nan")}, [theta])
    with pytest.raises(ValueError, match="no loss component"):
        DualGradNorm().combine({}, [theta])
