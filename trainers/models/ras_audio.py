"""``ras-audio``: Team RAS's WavLM chunk head, trained on cached frame states (methods §1.5).

Input: a 4 s window of ``wavlm-frames`` rows (200 × 20 ms, padding masked). The window is cut into
``n_chunks`` equal time chunks (cut points ``round(i·T/n)``); each chunk goes through attentive statistics
pooling (``Linear(in, 128) → Tanh → Dropout → Linear(128, 1, no bias)``, softmax over the chunk's real
frames, weighted mean ‖ weighted std → 2·in; 131,328 parameters on 1024-d) and the head ``LN(2·in) →
Dropout → Linear(2·in, 256) → GELU → Dropout → Linear(256, 2)`` (529,154 parameters) → (batch, 4, 2).
The 256-d post-GELU vector of each chunk is the exported audio embedding. A chunk without real frames
attends to its first frame (RAS's guard), so it never divides by zero.

Loss (RAS ``cfg_test_w_audio.yaml``): over the batch's valid one-second bins, 0.7·(1 − CCC_v) +
0.3·(1 − CCC_a) + 0.1·MSE; with fewer than 4 valid bins, MSE alone. Fine-tuning WavLM itself is out of
scope: the backbone's states come from the store.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from affectcache.trainers.data.config import VAConfig
from affectcache.trainers.models import ModelSpec, register_model

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, kw_only=True)
class RasAudioConfig(VAConfig):
    """``ras-audio`` at the authors' defaults (head/pool settings of ``cfg_test_w_audio.yaml``)."""

    view: ClassVar[str] = "audio-windows"

    input_modality: str = "wavlm-frames"
    """Store modality the model reads (frame-level audio states)."""

    window_s: float = 4.0
    """Window length, seconds."""

    hop_s: float = 2.0
    """Seconds between window starts."""

    min_window_s: float = 1.0
    """The last, partial window is kept when at least this long."""

    n_chunks: int = 4
    """Time chunks (and one-second target bins) per window."""

    attn_hidden: int = 128
    """Width of the attentive pooling's scoring layer."""

    attn_dropout: float = 0.2
    """Dropout inside the pooling's scoring layer."""

    head_hidden: int = 256
    """Head hidden width (the exported embedding)."""

    head_dropout: float = 0.2
    """Head dropout."""

    loss_weights: tuple[float, ...] = (0.7, 0.3)
    """Weight of each label's (1 − CCC) in the loss."""

    mse_weight: float = 0.1
    """Weight of the MSE term."""

    min_valid_bins: int = 2
    """Training windows need at least this many valid target bins (RAS: 2 of 4)."""

    min_active: float = 0.0
    """Training windows need at least this share of non-silent rows (the audio modality's mask); RAS
    filters on mouth opening instead, which the store does not hold."""

    lr: float = 2e-4
    """AdamW learning rate of the head."""

    plateau_factor: float = 0.5
    """ReduceLROnPlateau factor."""

    plateau_patience: int = 2
    """ReduceLROnPlateau patience."""

    plateau_threshold: float = 5e-4
    """ReduceLROnPlateau threshold."""

    min_lr: float = 1e-7
    """ReduceLROnPlateau lower bound."""

    ema_decay: float | None = 0.998
    """EMA of the weights used for evaluation and the best checkpoint."""

    grad_clip: float | None = 1.0
    """Gradient-norm clipping."""

    epochs: int = 50
    """Maximum epochs."""

    early_stop_patience: int | None = 6
    """Stop after this many epochs without a better validation score."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.window_s <= 0 or self.hop_s <= 0 or not 0 < self.min_window_s <= self.window_s:
            problems.append("need window_s > 0, hop_s > 0 and 0 < min_window_s <= window_s")
        if self.n_chunks < 1 or not 0 <= self.min_valid_bins <= self.n_chunks:
            problems.append("need n_chunks >= 1 and 0 <= min_valid_bins <= n_chunks")
        if len(self.loss_weights) != len(self.labels):
            problems.append(f"loss_weights needs one weight per label ({len(self.labels)})")
        return problems


class AttentiveStatsPool(nn.Module):  # type: ignore[misc]
    """Attentive statistics pooling over time with a mask of real steps: weighted mean ‖ weighted std."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Dropout(dropout),
                                   nn.Linear(hidden, 1, bias=False))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, -1e4)
        w = torch.softmax(scores.float(), dim=1).to(h.dtype).unsqueeze(-1)
        mu = (h * w).sum(dim=1)
        var = ((h - mu.unsqueeze(1)) ** 2 * w).sum(dim=1)
        return torch.cat([mu, (var + 1e-6).sqrt()], dim=-1)


class RasAudioModel(nn.Module):  # type: ignore[misc]
    """The ``ras-audio`` chunk head; ``forward(x, mask) -> (batch, n_chunks, labels)``."""

    def __init__(self, config: RasAudioConfig, input_dim: int) -> None:
        super().__init__()
        self.n_chunks = config.n_chunks
        self.pool = AttentiveStatsPool(input_dim, config.attn_hidden, config.attn_dropout)
        self.body = nn.Sequential(nn.LayerNorm(2 * input_dim), nn.Dropout(config.head_dropout),
                                  nn.Linear(2 * input_dim, config.head_hidden), nn.GELU(),
                                  nn.Dropout(config.head_dropout))
        self.out = nn.Linear(config.head_hidden, len(config.labels))

    def pooled(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, n_chunks, 2·in) pooled statistics of each chunk."""
        steps = x.shape[1]
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        cuts = [round(i * steps / self.n_chunks) for i in range(self.n_chunks + 1)]
        outs = []
        for lo, hi in itertools.pairwise(cuts):
            m = mask[:, lo:hi].clone()
            m[:, 0] |= ~m.any(dim=1)  # RAS's guard: an empty chunk attends to its first frame
            outs.append(self.pool(x[:, lo:hi], m))
        return torch.stack(outs, dim=1)

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding, prediction)`` per chunk: (batch, chunks, head_hidden), (batch, chunks, labels)."""
        emb = self.body(self.pooled(x, mask))
        return emb, self.out(emb)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.out(self.body(self.pooled(x, mask)))
        return out


def build_ras_audio(config: RasAudioConfig, input_dims: Mapping[str, int]) -> RasAudioModel:
    """The ``ras-audio`` head for ``input_dims["input"]`` values per audio frame."""
    return RasAudioModel(config, input_dims["input"])


def demo_config() -> RasAudioConfig:
    """Small settings for the demo corpus (tiny stand-in WavLM states)."""
    return RasAudioConfig(epochs=40, lr=3e-3, ema_decay=0.9, early_stop_patience=12, batch_size=8,
                          plateau_patience=4, bootstrap_resamples=200)


register_model(ModelSpec(name="ras-audio", config_type=RasAudioConfig, build=build_ras_audio,
                         summary="Team RAS WavLM chunk head on cached wavlm-frames (4 s windows, 4 bins)",
                         presets={"demo": demo_config}))
