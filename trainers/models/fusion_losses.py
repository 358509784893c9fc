"""Training losses of the fusion models: CCC-based regression terms and Kookmin's soft region labels.

All losses are differentiable torch functions over ``(B, T, 2)`` predictions and targets with a
``(B, T)`` validity mask (padding, missing labels). CCC is :func:`affectcache.trainers.metrics.ccc`
(torch path, differentiable) with population moments and the authors' ``1e-8`` in the denominator
(RAS ``utils.ccc_1d``).

- :func:`sequence_ccc_loss` -- RAS face / DCMMOE: CCC per window and dimension over the window's valid
  frames, loss = mean over windows and dimensions of ``w_d * (1 - CCC)``.
- :func:`ccc_mse_loss` -- RAAV (``ccc_mse_mm_loss``): every valid frame of the batch pooled,
  ``ccc_weight * (w_v (1 - CCC_v) + w_a (1 - CCC_a)) / (w_v + w_a) + mse_weight * MSE``; with fewer than
  ``min_valid`` frames only the MSE (a CCC of 3 points is noise).
- :func:`soft_region_labels`, :func:`region_kl`, :func:`soft_prompt_loss` -- Kookmin: Gaussian soft
  labels ``p_k ∝ exp(-|y - c_k|^2 / (2 sigma^2))`` over the region centres, ``KL(p || softmax(logits))``
  and ``(1 - CCC_v) + (1 - CCC_a) + lambda * KL``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from affectcache.trainers import metrics

CCC_EPS = 1e-8
"""Added to the CCC denominator (RAS ``ccc_1d``): a constant prediction of a constant target is 0."""


def _ccc_pooled(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CCC of two 1-D tensors (population moments, ``CCC_EPS``) through the trainers' metric."""
    out: torch.Tensor = metrics.ccc(pred, target, eps=CCC_EPS)
    return out


def _check(preds: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> None:
    if preds.shape != targets.shape or preds.ndim != 3 or preds.shape[-1] != 2:
        raise ValueError(f"expected preds and targets of shape (B, T, 2), got {tuple(preds.shape)} and "
                         f"{tuple(targets.shape)}")
    if valid.shape != preds.shape[:2]:
        raise ValueError(f"expected a (B, T) validity mask {tuple(preds.shape[:2])}, "
                         f"got {tuple(valid.shape)}")


def sequence_ccc_loss(preds: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                      weights: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Mean over windows and the two dimensions of ``w_d * (1 - CCC)``, CCC over each window's valid frames.

    Windows without a valid frame are left out; a batch without any gives 0 (still differentiable).
    """
    _check(preds, targets, valid)
    keep = valid.any(dim=1)
    if not bool(keep.any()):
        return preds.sum() * 0.0
    ccc = metrics.ccc(preds, targets, valid.unsqueeze(-1), dim=1, eps=CCC_EPS)   # (B, 2)
    dim_w = preds.new_tensor(weights)
    return ((1.0 - ccc[keep]) * dim_w).mean()


def ccc_mse_loss(preds: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, *,
                 v_weight: float = 0.7, a_weight: float = 0.3, ccc_weight: float = 1.0,
                 mse_weight: float = 0.01, min_valid: int = 4) -> torch.Tensor:
    """RAAV's loss over all valid frames of the batch pooled (see the module docstring)."""
    _check(preds, targets, valid)
    p = preds[valid].float()
    t = targets[valid].float()
    if p.shape[0] == 0:
        return preds.sum() * 0.0
    mse = F.mse_loss(p, t)
    if p.shape[0] < min_valid:
        return mse
    ccc_term = (v_weight * (1.0 - _ccc_pooled(p[:, 0], t[:, 0]))
                + a_weight * (1.0 - _ccc_pooled(p[:, 1], t[:, 1]))) / (v_weight + a_weight)
    return ccc_weight * ccc_term + mse_weight * mse


def soft_region_labels(targets: torch.Tensor, centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian soft labels over the regions: ``(..., 2)`` targets, ``(K, 2)`` centres -> ``(..., K)``.

    Each row sums to 1; computed as a softmax of ``-d^2 / (2 sigma^2)`` so far-away targets do not
    underflow to an all-zero row.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if centres.ndim != 2 or centres.shape[-1] != 2 or targets.shape[-1] != 2:
        raise ValueError(f"expected (..., 2) targets and (K, 2) centres, got {tuple(targets.shape)} and "
                         f"{tuple(centres.shape)}")
    d2 = ((targets.unsqueeze(-2) - centres) ** 2).sum(-1)                    # (..., K)
    return torch.softmax(-d2 / (2.0 * sigma**2), dim=-1)


def region_kl(soft_labels: torch.Tensor, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid rows of ``KL(p || softmax(logits)) = sum_k p_k (log p_k - log q_k)``."""
    if soft_labels.shape != logits.shape or valid.shape != logits.shape[:-1]:
        raise ValueError(f"expected soft labels and logits of one shape (..., K) and a (...) mask, got "
                         f"{tuple(soft_labels.shape)}, {tuple(logits.shape)}, {tuple(valid.shape)}")
    log_q = torch.log_softmax(logits, dim=-1)
    kl = (torch.special.xlogy(soft_labels, soft_labels) - soft_labels * log_q).sum(-1)
    kl = kl[valid]
    return kl.mean() if kl.numel() else logits.sum() * 0.0


def soft_prompt_loss(preds: torch.Tensor, region_logits: torch.Tensor, targets: torch.Tensor,
                     valid: torch.Tensor, centres: torch.Tensor, *, sigma: float,
                     kl_weight: float) -> torch.Tensor:
    """Kookmin's objective: ``(1 - CCC_v) + (1 - CCC_a)`` over the batch's valid frames + ``λ·KL``."""
    _check(preds, targets, valid)
    p = preds[valid].float()
    t = targets[valid].float()
    if p.shape[0] == 0:
        return preds.sum() * 0.0
    ccc_term = (1.0 - _ccc_pooled(p[:, 0], t[:, 0])) + (1.0 - _ccc_pooled(p[:, 1], t[:, 1]))
    labels = soft_region_labels(targets.float(), centres.to(targets.device, torch.float32), sigma)
    return ccc_term + kl_weight * region_kl(labels, region_logits.float(), valid)
