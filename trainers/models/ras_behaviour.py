"""``ras-behaviour``: Team RAS's pure-PyTorch Mamba regressor over segment embeddings (methods §1.4).

``Linear(in, d) → LN → Dropout`` → ``n_layers`` × :class:`MambaBlock` → head ``Linear(d, 512) → LN → GELU →
Dropout → Linear(512, 2)``; Xavier-uniform Linear weights, zero biases. 3,348,738 parameters on 2560-d
input (Qwen3-VL-4B ``last`` pooling) at the defaults. Trained on runs of 16 segments every 8 with the loss
0.5·Σ(1 − CCC) (sample moments, over the batch's valid segments); evaluated on frames after expanding
segment outputs (interval assignment, overlap mean).

The block keeps RAS's equations, which differ from the Mamba paper (so no library Mamba fits):
``a, b = in_proj(x)``; ``a`` → depthwise causal Conv1d (kernel k, padding k−1, trimmed) → SiLU → scan;
``Δ = softplus(D + s_D(a))`` with ``s_D = Linear(d, d/16) → Linear(d/16, d)``; ``Ā = exp(−A)·Δ`` (not
``exp(−A·Δ)``), ``B̄ = s_B(a)·Δ``; the scan ``h_t = Ā_t ⊙ h_{t−1} + B̄_t·a_t``, ``y_t = Σ_s h_t C_t`` runs
step by step; ``out = out_proj(y · SiLU(b))``; the block returns ``LN(D·x + Dropout(out))`` — the same
learnable ``D`` (init 1) scales the residual — with padded positions zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from affectcache.trainers.data.config import VAConfig
from affectcache.trainers.models import ModelSpec, register_model
from affectcache.trainers.models.ras_layers import BackboneWithHead, RasHead

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, kw_only=True)
class RasBehaviourConfig(VAConfig):
    """``ras-behaviour`` at the authors' defaults (``configs/text_va.toml``, Mamba)."""

    view: ClassVar[str] = "segments"

    input_modality: str = "behaviour-hidden"
    """Store modality the model reads (segment rows)."""

    d_model: int = 256
    """Model width."""

    n_layers: int = 12
    """Mamba blocks."""

    d_state: int = 8
    """State size per channel."""

    kernel_size: int = 5
    """Depthwise causal convolution width."""

    d_discr: int | None = None
    """Width of the Δ bottleneck (None: d_model // 16)."""

    dropout: float = 0.2
    """Dropout of the projection and the blocks' residual branch."""

    head_hidden: int = 512
    """Head hidden width (0: a single Linear)."""

    head_dropout: float = 0.2
    """Head dropout."""

    window: int = 16
    """Segments per training sequence."""

    stride: int = 8
    """Segments between sequence starts."""

    lr: float = 3e-4
    """AdamW learning rate."""

    weight_decay: float = 1e-3
    """AdamW weight decay."""

    early_stop_patience: int | None = 12
    """Stop after this many epochs without a better validation score."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.d_model < 1 or self.n_layers < 1 or self.d_state < 1 or self.kernel_size < 1:
            problems.append("d_model, n_layers, d_state and kernel_size must be >= 1")
        if self.window < 1 or self.stride < 1:
            problems.append("window and stride must be >= 1")
        return problems


class MambaBlock(nn.Module):  # type: ignore[misc]
    """One RAS Mamba block (see the module docstring)."""

    def __init__(self, d_model: int, *, d_state: int, kernel_size: int, d_discr: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.s_B = nn.Linear(d_model, d_state, bias=False)
        self.s_C = nn.Linear(d_model, d_state, bias=False)
        self.s_D = nn.Sequential(nn.Linear(d_model, d_discr, bias=False),
                                 nn.Linear(d_discr, d_model, bias=False))
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size - 1, groups=d_model)
        self.A = nn.Parameter(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_model, 1))
        self.D = nn.Parameter(torch.ones(d_model))
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        steps = x.shape[1]
        a, b = self.in_proj(x).chunk(2, dim=-1)
        a = F.silu(self.conv(a.transpose(1, 2))[..., :steps].transpose(1, 2))
        y = self.scan(a)
        out = self.out_proj(y * F.silu(b))
        result: torch.Tensor = self.norm(self.D * x + self.dropout(out))
        if mask is not None:
            result = result.masked_fill(~mask.unsqueeze(-1), 0.0)
        return result

    def scan(self, a: torch.Tensor) -> torch.Tensor:
        """The selective scan, sequentially over time: (batch, time, d) → (batch, time, d)."""
        batch, steps, d_model = a.shape
        delta = F.softplus(self.D + self.s_D(a))  # (B, T, D)
        a_bar = torch.exp(-self.A).unsqueeze(0).unsqueeze(0) * delta.unsqueeze(-1)  # (B, T, D, S)
        bx = self.s_B(a).unsqueeze(2) * delta.unsqueeze(-1) * a.unsqueeze(-1)  # (B, T, D, S)
        c = self.s_C(a)  # (B, T, S)
        h = torch.zeros(batch, d_model, self.A.shape[1], dtype=a.dtype, device=a.device)
        outs = []
        for t in range(steps):
            h = a_bar[:, t] * h + bx[:, t]
            outs.append((h * c[:, t].unsqueeze(1)).sum(dim=-1))
        return torch.stack(outs, dim=1)


class RasBehaviourModel(BackboneWithHead):
    """The ``ras-behaviour`` module; ``forward(x, mask) -> (batch, segments, labels)``."""

    def __init__(self, config: RasBehaviourConfig, input_dim: int) -> None:
        super().__init__()
        d = config.d_model
        self.proj = nn.Sequential(nn.Linear(input_dim, d), nn.LayerNorm(d), nn.Dropout(config.dropout))
        self.blocks = nn.ModuleList(
            MambaBlock(d, d_state=config.d_state, kernel_size=config.kernel_size,
                       d_discr=config.d_discr or max(1, d // 16), dropout=config.dropout)
            for _ in range(config.n_layers))
        self.head = RasHead(d, config.head_hidden, len(config.labels), dropout=config.head_dropout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def backbone(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.proj(x)
        if mask is not None:
            h = h.masked_fill(~mask.unsqueeze(-1), 0.0)
        for block in self.blocks:
            h = block(h, mask)
        return h


def build_ras_behaviour(config: RasBehaviourConfig, input_dims: Mapping[str, int]) -> RasBehaviourModel:
    """The ``ras-behaviour`` module for ``input_dims["input"]`` values per segment."""
    return RasBehaviourModel(config, input_dims["input"])


register_model(ModelSpec(name="ras-behaviour", config_type=RasBehaviourConfig, build=build_ras_behaviour,
                         summary="Team RAS Mamba regressor over segment embeddings (segment runs)"))
