"""``ras-face``: Team RAS's face temporal Transformer over frame embeddings (methods §1.3).

``Linear(in, d) → LN → Dropout`` → ``n_layers`` ×
:class:`~affectcache.trainers.models.ras_layers.RasEncoderLayer`, each wrapped in an outer residual
(``x = x + layer(x, x, x)``) → MLP head → (batch, time, 2). On 256-d GRADA input with the defaults it has
2,112,002 parameters. Trained on frame windows (400 frames every 150) with
the masked per-window CCC loss; the exported frame embedding is the head's 256-d pre-output vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import nn

from affectcache.trainers.data.config import VAConfig
from affectcache.trainers.models import ModelSpec, register_model
from affectcache.trainers.models.ras_layers import BackboneWithHead, RasEncoderLayer, RasHead

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, kw_only=True)
class RasFaceConfig(VAConfig):
    """``ras-face`` at the authors' defaults (``config_best.toml``)."""

    view: ClassVar[str] = "frame-windows"

    input_columns: tuple[int, int] | None = (0, 256)
    """``[start, stop)`` of the stored value columns to use (GRADA: [0, 256] = the embedding of the 266
    values); null = every column."""

    hidden: int = 256
    """Model width."""

    n_heads: int = 8
    """Attention heads per layer."""

    n_layers: int = 5
    """Encoder layers."""

    dropout: float = 0.1
    """Dropout of the projection, attention, FFN, residual branches and head."""

    pe_dropout: float = 0.1
    """Dropout after adding the positional encoding (fixed at 0.1 in the authors' best run)."""

    pe_max_len: int = 5000
    """Rows of the positional table (longest window)."""

    head: Literal["mlp", "linear"] = "mlp"
    """``mlp``: Linear → LN → GELU → Dropout → Linear; ``linear``: one Linear."""

    window: int = 400
    """Frames per training window."""

    hop: int = 150
    """Frames between window starts (the last window is aligned to the video's end)."""

    max_fill_s: float | None = None
    """A frame without its own feature row takes the nearest valid row within this many seconds (RAS:
    any distance); beyond it the input is zeros."""

    train_on_filled: bool = False
    """Whether frames whose input was filled from another frame count in the training loss (RAS: no; the
    validation score always uses every labelled frame)."""

    loss_weights: tuple[float, ...] = (1.0, 1.0)
    """Weight of each label's (1 − CCC) in the loss."""

    ccc_eps: float = 1e-8
    """Added to the CCC loss denominator."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.hidden % self.n_heads or self.n_layers < 1:
            problems.append(f"hidden ({self.hidden}) must be divisible by n_heads ({self.n_heads}); "
                            "n_layers >= 1")
        if self.window < 1 or self.hop < 1 or self.window > self.pe_max_len:
            problems.append("need window >= 1, hop >= 1 and window <= pe_max_len")
        if len(self.loss_weights) != len(self.labels):
            problems.append(f"loss_weights needs one weight per label ({len(self.labels)})")
        return problems


class RasFaceModel(BackboneWithHead):
    """The ``ras-face`` module (see the module docstring); ``forward(x, mask) -> (batch, time, labels)``."""

    def __init__(self, config: RasFaceConfig, input_dim: int) -> None:
        super().__init__()
        d = config.hidden
        self.proj = nn.Sequential(nn.Linear(input_dim, d), nn.LayerNorm(d), nn.Dropout(config.dropout))
        self.layers = nn.ModuleList(
            RasEncoderLayer(d, config.n_heads, dropout=config.dropout, pe_dropout=config.pe_dropout,
                            pe_max_len=config.pe_max_len) for _ in range(config.n_layers))
        self.head = RasHead(d, d if config.head == "mlp" else 0, len(config.labels), dropout=config.dropout)

    def backbone(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Encoder output (batch, time, hidden); ``mask`` is true on real (non-padding) steps."""
        padding = None if mask is None else ~mask
        h = self.proj(x)
        for layer in self.layers:
            h = h + layer(h, h, h, key_padding_mask=padding)
        return h


def build_ras_face(config: RasFaceConfig, input_dims: Mapping[str, int]) -> RasFaceModel:
    """The ``ras-face`` module for an input of ``input_dims["input"]`` values per frame."""
    return RasFaceModel(config, input_dims["input"])


def demo_config() -> RasFaceConfig:
    """Small settings for the demo corpus (a few short clips, CLIP face embeddings at 2 fps)."""
    return RasFaceConfig(input_modality="clip-face", input_columns=None, hidden=64, n_heads=4, n_layers=2,
                         window=100, hop=50, train_on_filled=True, epochs=30, lr=1e-3,
                         early_stop_patience=10, batch_size=8, bootstrap_resamples=200)


register_model(ModelSpec(name="ras-face", config_type=RasFaceConfig, build=build_ras_face,
                         summary="Team RAS face temporal Transformer (frame windows, per-window CCC loss)",
                         presets={"demo": demo_config}))
