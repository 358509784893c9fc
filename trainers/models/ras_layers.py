"""Building blocks of Team RAS's temporal models (shared by ``ras-face`` and the fusion models).

* :class:`PositionalEncoding`: the sinusoidal table (max_len rows) added to the input, then dropout.
* :class:`RasEncoderLayer`: RAS's custom encoder layer, which takes separate query/key/value streams:
  the positional encoding is re-added to q, k and v inside every layer (each with its own dropout, fixed
  at 0.1 in the authors' best run), then multi-head attention with a key padding mask, and post-norm with
  dropout on the *residual* branch: ``x = LN(attn + Dropout(q))``, ``LN(FFN(x) + Dropout(x))``; FFN is
  ``Linear(d, d) → GELU → Dropout → Linear(d, d)``.
* :class:`RasHead`: ``Linear(d, h) → LN → GELU → Dropout → Linear(h, out)``; :meth:`RasHead.embed` is the
  output of its first four modules (what RAS exports as the frame embedding for fusion).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class PositionalEncoding(nn.Module):  # type: ignore[misc]
    """Sinusoidal positional encoding added to a (batch, time, d) input, then dropout."""

    pe: torch.Tensor

    def __init__(self, d_model: int, *, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) > self.pe.size(0):
            raise ValueError(f"sequence of {x.size(1)} steps exceeds the positional table "
                             f"({self.pe.size(0)} rows)")
        return self.dropout(x + self.pe[: x.size(1)].to(x.dtype))


class RasEncoderLayer(nn.Module):  # type: ignore[misc]
    """RAS's encoder layer over separate query / key / value streams (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.1, pe_dropout: float = 0.1,
                 pe_max_len: int = 5000, positional: bool = True) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ff_in = nn.Linear(d_model, d_model)
        self.ff_out = nn.Linear(d_model, d_model)
        self.ff_dropout = nn.Dropout(dropout)
        self.norm_attention = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.residual_dropout_attention = nn.Dropout(dropout)
        self.residual_dropout_ff = nn.Dropout(dropout)
        self.positional = (PositionalEncoding(d_model, dropout=pe_dropout, max_len=pe_max_len)
                           if positional else None)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.positional is not None:
            # The same module (three independent dropout draws) for k, v and q, in RAS's order.
            key = self.positional(key)
            value = self.positional(value)
            query = self.positional(query)
        attended, _ = self.attention(query, key, value, key_padding_mask=key_padding_mask, need_weights=False)
        x = self.norm_attention(attended + self.residual_dropout_attention(query))
        ff = self.ff_out(self.ff_dropout(F.gelu(self.ff_in(x))))
        out: torch.Tensor = self.norm_ff(ff + self.residual_dropout_ff(x))
        return out


class RasHead(nn.Module):  # type: ignore[misc]
    """``Linear(d, h) → LN → GELU → Dropout → Linear(h, out)`` (or a single Linear when ``hidden`` is 0)."""

    def __init__(self, d_model: int, hidden: int, out_dim: int, *, dropout: float) -> None:
        super().__init__()
        self.body: nn.Module = (nn.Sequential(nn.Linear(d_model, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                              nn.Dropout(dropout)) if hidden > 0 else nn.Identity())
        self.out = nn.Linear(hidden if hidden > 0 else d_model, out_dim)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding, prediction)``: the representation before the last Linear, and the output."""
        emb = self.body(x)
        return emb, self.out(emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.body(x))
        return out


class BackboneWithHead(nn.Module):  # type: ignore[misc]
    """A sequence model as RAS builds it: a ``backbone`` (batch, time, hidden) then a :class:`RasHead`
    (``self.head``). Subclasses define ``backbone``; ``embed`` exports the head's pre-output vector."""

    head: RasHead

    def backbone(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding, prediction)`` per step (the embedding is the head's pre-output vector)."""
        result: tuple[torch.Tensor, torch.Tensor] = self.head.embed(self.backbone(x, mask))
        return result

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.head(self.backbone(x, mask))
        return out
