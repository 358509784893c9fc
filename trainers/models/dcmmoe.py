"""DCMMOE: directed cross-modal mixture of experts over frame-level streams (Team RAS, seed 000).

Inputs are per-frame streams on the label clock -- the prediction modalities written by ``predict``
(embedding ‖ prediction, 258-d for RAS's heads), behaviour and audio expanded from segments/windows --
each projected by ``Linear(d, H) -> LayerNorm -> Dropout`` (RAS ``FusionModel``).

**An expert** is a directed cross-attention stack ``query>source`` (e.g. ``face>behaviour``): the query
modality's stream attends to the source modality's stream through ``layers`` layers of RAS's layer type
(:class:`~affectcache.trainers.models.ras_layers.RasEncoderLayer`, shared with ``ras-face``: sinusoidal
position encoding re-added to q, k and v inside every layer, ``nn.MultiheadAttention``, post-norm
``LN(attn + Dropout(q))``, FFN ``H -> H`` with GELU, ``LN(ffn + Dropout(x))``), with the outer
residual ``q = q + layer(q, k, v)`` after each layer; k and v stay the source's projection. A side may
be ``fusion``: the mean of all projected streams (RAS's reserved name; their code re-averages a ``fusion``
source with the updated query after each layer, here it stays the mean of the projections).

**The gate** (``gate="softmax"``; the public code has none, so this design follows the poster's
"adaptive frame-wise expert gating"): at every frame ``t`` the ``E`` expert outputs are concatenated and
scored by ``Linear(E·H, gate_hidden) -> GELU -> Dropout -> Linear(gate_hidden, E)``; an expert is
*available* at ``t`` when its query modality is valid at ``t`` and its source has at least one valid
frame in the window; unavailable experts get logit ``-1e4``, the softmax is renormalised over the
available ones (RAAV's rule), and the fused frame is ``sum_e g_e(t) · expert_e(t)`` (zero where no expert
is available). So when the face is lost for a few frames, the gate moves those frames to the
behaviour- and audio-queried experts. The gate weights are returned (``extras["expert_gate"]``) and,
spread half to each expert's query and half to its source modality (``fusion`` spreads its half evenly),
as per-frame modality contributions.

**Head**: ``Linear(H, H) -> LN -> GELU -> Dropout -> Linear(H, 2)`` (``mlp``) or ``Linear(H, 2)``; the
exported embedding is the output of the first four modules.

Presets:

- ``dcmmoe`` (default): face, behaviour and audio; all 6 directed pairs as experts; 16 heads, hidden 256,
  5 layers, 400-frame windows with hop 150 (the poster's setting), softmax gate.
- ``dcmmoe-released``: the public ``FusionModel`` of ``config_best.toml`` exactly: one expert
  ``face>behaviour``, 8 heads, no gate -- 2,179,330 parameters on 258-d inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

import affectcache.trainers.fusion.tasks  # noqa: F401  (registers the fusion-windows view)
from affectcache.trainers.fusion.config import FusionVAConfig
from affectcache.trainers.models import ModelSpec, register_model
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput, require_modalities
from affectcache.trainers.models.fusion_losses import sequence_ccc_loss
from affectcache.trainers.models.ras_layers import RasEncoderLayer

if TYPE_CHECKING:
    from collections.abc import Mapping

FUSION_STREAM = "fusion"
"""Expert side meaning the mean of all projected modality streams (RAS's reserved name)."""

_MASKED_LOGIT = -1e4


@dataclass(frozen=True, kw_only=True)
class DCMMOEConfig(FusionVAConfig):
    """DCMMOE architecture and training settings (defaults: the ``dcmmoe`` preset)."""

    modalities: tuple[str, ...] = ("face", "behaviour", "audio")
    """Input streams on the frame clock, in order (names of the batch's inputs)."""

    input_dims: tuple[int, ...] = (258, 258, 258)
    """Features per frame of each modality (RAS's heads: 256-d embedding ‖ 2-d prediction = 258); the
    trainer sets it from the store's modalities; ``[]`` = only from the store)."""

    experts: tuple[str, ...] = ("face>behaviour", "face>audio", "behaviour>face", "behaviour>audio",
                                "audio>face", "audio>behaviour")
    """Directed experts ``query>source``: the query stream attends to the source stream. Either side may
    be ``fusion`` (mean of all projected streams)."""

    hidden: int = 256
    """Width of the projected streams, the attention layers and the head."""

    heads: int = 16
    """Attention heads per layer (the poster: 16; the released code: 8)."""

    layers: int = 5
    """Cross-attention layers per expert."""

    dropout: float = 0.1
    """Dropout in projections, attention, FFN, residual branches, gate and head."""

    head: Literal["mlp", "linear"] = "mlp"
    """``mlp``: Linear -> LN -> GELU -> Dropout -> Linear; ``linear``: one Linear(H, 2)."""

    gate: Literal["softmax", "none"] = "softmax"
    """``softmax``: frame-wise softmax gate over the experts; ``none``: exactly one expert, no gate (the
    released code)."""

    gate_hidden: int = 256
    """Hidden width of the gate MLP."""

    max_len: int = 5000
    """Longest window the sinusoidal position table covers (RAS: 5000)."""

    loss_weights: tuple[float, float] = (1.0, 1.0)
    """Valence, arousal weights of the per-window masked CCC loss (RAS ``w=[1,1]``)."""

    def streams(self) -> tuple[str, ...]:
        """The model's streams: ``modalities``."""
        return self.modalities

    def expert_pairs(self) -> list[tuple[str, str]]:
        """``(query, source)`` of each expert."""
        return [tuple(e.split(">", 1)) for e in self.experts]  # type: ignore[misc]

    def validate(self) -> list[str]:
        """Every cross-field problem of this config."""
        problems = super().validate()
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities must be distinct and non-empty, got {list(self.modalities)}")
        if FUSION_STREAM in self.modalities:
            problems.append(f"{FUSION_STREAM!r} is reserved for the mean stream; rename that modality")
        if self.input_dims and (len(self.input_dims) != len(self.modalities)
                                or any(d < 1 for d in self.input_dims)):
            problems.append(f"input_dims must give one positive size per modality ({len(self.modalities)}), "
                            f"got {list(self.input_dims)} (or [] to take them from the store)")
        if not self.experts:
            problems.append("experts must name at least one 'query>source' pair")
        allowed = {*self.modalities, FUSION_STREAM}
        for e in self.experts:
            parts = e.split(">")
            if len(parts) != 2 or not set(parts) <= allowed:
                problems.append(f"expert {e!r} must be 'query>source' with sides in {sorted(allowed)}")
        if len(set(self.experts)) != len(self.experts):
            problems.append(f"experts must be distinct, got {list(self.experts)}")
        if self.gate == "none" and len(self.experts) != 1:
            problems.append(f"gate 'none' needs exactly one expert, got {len(self.experts)}; use 'softmax'")
        if self.hidden < 1 or self.heads < 1 or self.hidden % self.heads:
            problems.append(f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        if self.layers < 1 or self.gate_hidden < 1 or self.max_len < 1:
            problems.append("layers, gate_hidden and max_len must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.window < 1 or not 1 <= self.hop <= self.window or self.window > self.max_len:
            problems.append(f"need 1 <= hop <= window <= max_len, got hop {self.hop}, window {self.window}, "
                            f"max_len {self.max_len}")
        if self.hidden % 2:
            problems.append(f"hidden must be even (sinusoidal position encoding), got {self.hidden}")
        return problems


def dcmmoe_config() -> DCMMOEConfig:
    """``dcmmoe``: the poster's design (three streams, six directed experts, 16 heads, frame-wise gate)."""
    return DCMMOEConfig()


@dataclass(frozen=True, kw_only=True)
class DCMMOEReleasedConfig(DCMMOEConfig):
    """``dcmmoe-released``: the public ``FusionModel`` with ``config_best.toml`` (2,179,330 parameters)."""

    modalities: tuple[str, ...] = ("face", "behaviour")
    """Stream names the model reads, in order (the released model: face and behaviour)."""

    input_dims: tuple[int, ...] = (258, 258)
    """Features per frame of each modality (256-d embedding ‖ 2-d prediction); set from the store."""

    experts: tuple[str, ...] = ("face>behaviour",)
    """The one released expert: face queries behaviour."""

    heads: int = 8
    """Attention heads per layer (the released code: 8)."""

    gate: Literal["softmax", "none"] = "none"
    """No gate (the released code has one expert)."""


def dcmmoe_released_config() -> DCMMOEReleasedConfig:
    """``dcmmoe-released``: the public ``FusionModel`` with ``config_best.toml`` (2,179,330 parameters)."""
    return DCMMOEReleasedConfig()


def dcmmoe_demo_config() -> DCMMOEConfig:
    """Small settings for the demo corpus (a few short clips at 2 fps; face and audio heads' predictions)."""
    return DCMMOEConfig(modalities=("face", "audio"),
                        input_dims=(), experts=("face>audio", "audio>face", "face>fusion", "audio>fusion"),
                        hidden=32, heads=4,
                        layers=1, gate_hidden=32, window=100, hop=50, epochs=30, lr=1e-3,
                        early_stop_patience=10, batch_size=8, bootstrap_resamples=200)


def masked_softmax(logits: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``available`` entries, renormalised; all-zero rows where
    nothing is available (RAAV's rule: masked logits at ``-1e4``, weights multiplied by the mask, divided
    by their sum clamped at ``1e-8``)."""
    weights = torch.softmax(logits.masked_fill(~available, _MASKED_LOGIT), dim=-1)
    weights = weights * available.to(weights.dtype)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-8)


class DCMMOEModel(nn.Module):  # type: ignore[misc]
    """Directed cross-modal mixture of experts (see the module docstring)."""

    def __init__(self, config: DCMMOEConfig) -> None:
        super().__init__()
        config.check()
        if not config.input_dims:
            raise ValueError("dcmmoe: input_dims is empty; build the model through the trainer (it reads the "
                             "widths from the store) or set input_dims")
        self.config = config
        h = config.hidden
        self.projections = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(d, h), nn.LayerNorm(h), nn.Dropout(config.dropout))
            for m, d in zip(config.modalities, config.input_dims, strict=True)
        })
        self.experts = nn.ModuleList([
            nn.ModuleList([RasEncoderLayer(h, config.heads, dropout=config.dropout, pe_max_len=config.max_len)
                           for _ in range(config.layers)])
            for _ in config.experts
        ])
        n = len(config.experts)
        self.gate: nn.Module | None = None
        if config.gate == "softmax":
            self.gate = nn.Sequential(nn.Linear(n * h, config.gate_hidden), nn.GELU(),
                                      nn.Dropout(config.dropout), nn.Linear(config.gate_hidden, n))
        self.head: nn.Module = (
            nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(config.dropout),
                          nn.Linear(h, 2))
            if config.head == "mlp" else nn.Linear(h, 2))
        # Share of each expert's gate weight credited to each modality (contribution maps).
        share = torch.zeros(n, len(config.modalities))
        for e, sides in enumerate(config.expert_pairs()):
            for side in sides:
                if side == FUSION_STREAM:
                    share[e] += 0.5 / len(config.modalities)
                else:
                    share[e, config.modalities.index(side)] += 0.5
        self.register_buffer("modality_share", share, persistent=False)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Input modality names."""
        return self.config.modalities

    def forward(self, batch: FusionBatch) -> FusionOutput:
        """Predict ``(B, T, 2)`` for a batch whose modalities all share the frame clock ``T``."""
        cfg = self.config
        require_modalities(batch, cfg.modalities, dict(zip(cfg.modalities, cfg.input_dims, strict=True)),
                           "dcmmoe")
        mask = batch.mask.bool()
        streams: dict[str, torch.Tensor] = {}
        valid: dict[str, torch.Tensor] = {}
        for m in cfg.modalities:
            v = batch.valid[m].bool() & mask
            if v.shape != mask.shape:
                raise ValueError(f"dcmmoe: modality {m!r} has {tuple(v.shape)} rows, the frame mask "
                                 f"{tuple(mask.shape)}; frame modalities must share the frame clock")
            streams[m] = self.projections[m](batch.inputs[m].float()) * v.unsqueeze(-1)
            valid[m] = v
        streams[FUSION_STREAM] = torch.stack([streams[m] for m in cfg.modalities]).mean(0)
        valid[FUSION_STREAM] = torch.stack([valid[m] for m in cfg.modalities]).any(0)

        outputs, available = [], []
        for layers, (q_name, s_name) in zip(self.experts, cfg.expert_pairs(), strict=True):
            source_valid = valid[s_name]
            has_source = source_valid.any(dim=1, keepdim=True)                   # (B, 1)
            # A row whose source is entirely invalid would make every key masked (NaN): let it attend
            # freely (its inputs are zeros) and keep the expert out of the gate on that row instead.
            kpm = ~(source_valid | ~has_source)
            if cfg.gate == "none":
                kpm = ~mask  # the released model masks keys by the window's frame mask only
            q = streams[q_name]
            kv = streams[s_name]
            for layer in layers:
                q = q + layer(q, kv, kv, key_padding_mask=kpm)
            outputs.append(q)
            available.append(valid[q_name] & has_source)
        experts_out = torch.stack(outputs, dim=2)                                  # (B, T, E, H)
        extras: dict[str, torch.Tensor] = {}
        weights: dict[str, torch.Tensor] = {}
        if self.gate is None:
            fused = experts_out[:, :, 0]
        else:
            avail = torch.stack(available, dim=2)                                  # (B, T, E)
            logits = self.gate(experts_out.flatten(2))
            gate = masked_softmax(logits, avail)
            fused = (experts_out * gate.unsqueeze(-1)).sum(2)
            extras["expert_gate"] = gate
            per_modality = gate @ self.modality_share                              # (B, T, M)
            weights = {m: per_modality[..., i] for i, m in enumerate(cfg.modalities)}
        if isinstance(self.head, nn.Sequential):
            embedding = self.head[3](self.head[2](self.head[1](self.head[0](fused))))
            preds = self.head[4](embedding)
        else:
            embedding, preds = fused, self.head(fused)
        return FusionOutput(preds=preds, embedding=embedding, weights=weights, extras=extras)

    def loss(self, output: FusionOutput, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """RAS's per-window masked CCC loss, weighted by ``loss_weights``."""
        return sequence_ccc_loss(output.preds, targets, valid, self.config.loss_weights)


def build_dcmmoe(config: DCMMOEConfig, input_dims: Mapping[str, int]) -> DCMMOEModel:
    """The model for the store's stream widths (``input_dims`` per stream name)."""
    missing = [m for m in config.modalities if m not in input_dims]
    if missing:
        raise ValueError(f"dcmmoe: no width for streams {missing}; got {sorted(input_dims)}")
    return DCMMOEModel(config.replace(input_dims=tuple(int(input_dims[m]) for m in config.modalities)))


register_model(ModelSpec(name="dcmmoe", config_type=DCMMOEConfig, build=build_dcmmoe,
                         summary="Team RAS DCMMOE: directed cross-modal experts, frame-wise softmax gate",
                         presets={"released": dcmmoe_released_config, "demo": dcmmoe_demo_config}))
register_model(ModelSpec(name="dcmmoe-released", config_type=DCMMOEReleasedConfig, build=build_dcmmoe,
                         summary="Team RAS's public FusionModel (face queries behaviour, no gate)"))
