"""Dual-branch GradNorm: SCD-MMPSR's loss weighting for supervised and pseudo-label components.

Two wallets of weights, as in the authors' ``MultiTaskLossWithNaN_v3`` (``src/utils/losses.py``):
supervised ``{emo_sup, per_sup, ah_sup}`` starting at 1 each (sum 3) and pseudo-label
``{emo_ssl, per_ssl, ah_ssl}`` starting at ``λ_ssl`` each (sum ``3·λ_ssl``). At every step, per wallet and
over its *active* components ``i`` (present in the batch, first loss recorded):

* ``G_i = w_i · ‖∇_shared L_i‖₂`` (gradient over the shared parameters only),
* ``r_i = L_i / L_i(first seen)``,
* ``target_i = mean(G) · (r_i / mean(r))^α`` (constant),
* ``L_gn = Σ_i |G_i − target_i|``, so ``∂L_gn/∂w_i = sign(G_i − target_i) · ‖∇_shared L_i‖₂``;
* ``w_i ← max(w_i − lr · ∂L_gn/∂w_i, floor)``, then the active weights are rescaled to sum to the
  wallet's budget.

The training loss is then ``Σ_i w_i L_i`` over both wallets with the *updated* weights held constant.

Where the authors' code is the reference over the paper's prose: only the components active in the batch
are rescaled, and they are rescaled to the *whole* budget (a wallet whose other components are absent in
a batch does not sum to its budget until they come back); a component's first loss is the value the first
time it appears (kept for the whole run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from affectcache.extractors.core.config import Config
from affectcache.trainers.mcdm.losses import PSEUDO, SUPERVISED

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True, kw_only=True)
class GradNormConfig(Config):
    """Dual-branch GradNorm hyperparameters (the authors' config.toml values)."""

    alpha_sup: float = 1.25
    """Restoring-force exponent of the supervised wallet."""

    lr_sup: float = 0.01
    """Weight learning rate of the supervised wallet."""

    alpha_ssl: float = 1.0
    """Restoring-force exponent of the pseudo-label wallet."""

    lr_ssl: float = 0.005
    """Weight learning rate of the pseudo-label wallet."""

    budget_sup: float = 3.0
    """Sum of the supervised weights (one per task)."""

    lambda_ssl: float = 0.3
    """Initial weight of each pseudo-label component; the pseudo-label budget is ``3·λ_ssl``."""

    floor: float = 1e-3
    """Lower bound of every weight before rescaling."""

    enabled: bool = True
    """Adapt the weights (off: fixed initial weights, a plain weighted sum)."""

    def validate(self) -> list[str]:
        """Budgets, rates and the floor must be positive."""
        problems = []
        if min(self.budget_sup, self.lambda_ssl, self.floor) <= 0:
            problems.append("budget_sup, lambda_ssl and floor must be > 0")
        if min(self.lr_sup, self.lr_ssl, self.alpha_sup, self.alpha_ssl) < 0:
            problems.append("learning rates and alphas must be >= 0")
        return problems


@dataclass(kw_only=True)
class Wallet:
    """One wallet: its components' weights and first losses, and its update rule."""

    keys: tuple[str, ...]
    """Component names."""
    budget: float
    """What the active weights sum to after an update."""
    alpha: float
    """Restoring-force exponent."""
    lr: float
    """Weight learning rate."""
    floor: float
    """Lower bound of a weight before rescaling."""
    weights: dict[str, float] = field(default_factory=dict)
    """Current weight per component."""
    initial_losses: dict[str, float] = field(default_factory=dict)
    """``L_i`` the first time component ``i`` appeared (clamped to >= 1e-8)."""

    @classmethod
    def create(cls, keys: Sequence[str], *, start: float, budget: float, alpha: float, lr: float,
               floor: float) -> Wallet:
        """A wallet whose weights all start at ``start``, rescaled to ``budget``."""
        total = start * len(keys)
        return cls(keys=tuple(keys), budget=budget, alpha=alpha, lr=lr, floor=floor,
                   weights={k: budget * start / total for k in keys})

    def update(self, losses: Mapping[str, torch.Tensor], grad_norms: Mapping[str, float]) -> None:
        """One GradNorm step from this batch's losses and their shared-gradient norms (see module doc)."""
        for k in self.keys:
            if k in losses and k not in self.initial_losses:
                self.initial_losses[k] = max(float(losses[k].detach()), 1e-8)
        active = [k for k in self.keys if k in losses and k in self.initial_losses]
        if not active:
            return
        norms = torch.tensor([grad_norms[k] for k in active], dtype=torch.float64)
        w = torch.tensor([self.weights[k] for k in active], dtype=torch.float64)
        ratios = torch.tensor([max(float(losses[k].detach()), 1e-8) / self.initial_losses[k] for k in active],
                              dtype=torch.float64)
        g = w * norms
        target = g.mean() * (ratios / ratios.mean()) ** self.alpha
        w = (w - self.lr * torch.sign(g - target) * norms).clamp_min(self.floor)
        w = self.budget * w / w.sum()
        for k, value in zip(active, w.tolist(), strict=True):
            self.weights[k] = value

    def state_dict(self) -> dict[str, Any]:
        """Weights and first losses as plain data (checkpoint-safe)."""
        return {"weights": dict(self.weights), "initial_losses": dict(self.initial_losses)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        unknown = set(state["weights"]) - set(self.keys)
        if unknown:
            raise ValueError(f"wallet state has unknown components {sorted(unknown)}; expected {self.keys}")
        self.weights = {k: float(v) for k, v in state["weights"].items()}
        self.initial_losses = {k: float(v) for k, v in state["initial_losses"].items()}


def shared_gradient_norm(loss: torch.Tensor, shared: Sequence[torch.nn.Parameter]) -> float:
    """``‖∇_shared loss‖₂`` over every shared parameter (unused parameters count as zero gradients)."""
    grads = torch.autograd.grad(loss, list(shared), retain_graph=True, allow_unused=True)
    squares = [g.detach().pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


class DualGradNorm:
    """Both wallets; :meth:`combine` updates the weights from a batch and returns the weighted loss."""

    def __init__(self, config: GradNormConfig | None = None) -> None:
        self.config = config = config or GradNormConfig()
        config.check()
        self.supervised = Wallet.create(SUPERVISED, start=1.0, budget=config.budget_sup,
                                        alpha=config.alpha_sup, lr=config.lr_sup, floor=config.floor)
        self.pseudo = Wallet.create(PSEUDO, start=config.lambda_ssl, budget=3.0 * config.lambda_ssl,
                                    alpha=config.alpha_ssl, lr=config.lr_ssl, floor=config.floor)

    @property
    def weights(self) -> dict[str, float]:
        """Every component's current weight."""
        return {**self.supervised.weights, **self.pseudo.weights}

    def combine(self, components: Mapping[str, torch.Tensor],
                shared: Sequence[torch.nn.Parameter]) -> torch.Tensor:
        """Update both wallets (when enabled) and return ``Σ w_i L_i`` with the new weights as constants.

        ``shared`` are the parameters no task owns (:meth:`MCDM.shared_parameters`); the components'
        graphs are kept for the caller's ``backward``.
        """
        unknown = sorted(set(components) - set(SUPERVISED) - set(PSEUDO))
        if unknown:
            raise KeyError(f"unknown loss components {unknown}; known: {[*SUPERVISED, *PSEUDO]}")
        if not components:
            raise ValueError("no loss component in this batch: every task output lacks both labels and "
                             "confident pseudo-labels")
        bad = sorted(k for k, v in components.items() if not torch.isfinite(v.detach()))
        if bad:
            raise FloatingPointError(f"loss components {bad} are not finite: check the inputs for NaN/Inf "
                                     "and lower the learning rate")
        if self.config.enabled:
            norms = {k: shared_gradient_norm(v, shared) for k, v in components.items()}
            for wallet in (self.supervised, self.pseudo):
                wallet.update({k: v for k, v in components.items() if k in wallet.keys}, norms)
        weights = self.weights
        return torch.stack([weights[k] * v for k, v in components.items()]).sum()

    def state_dict(self) -> dict[str, Any]:
        """Both wallets as plain data."""
        return {"supervised": self.supervised.state_dict(), "pseudo": self.pseudo.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.supervised.load_state_dict(state["supervised"])
        self.pseudo.load_state_dict(state["pseudo"])
