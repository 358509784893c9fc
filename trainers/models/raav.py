"""RAAV: reliability-aware audio-visual fusion (Team RAS's ``MultimodalFusionModelV4``, seed 000).

A sample is one 4 s audio window: the frame modalities (face, multimodal behaviour) sliced to the
window's frames ``[start_frame, end_frame)`` and the window's 4 audio chunk tokens (embedding ‖
prediction, 258-d each). Steps (hidden ``H``):

1. **Reliability gate over frame modalities.** Each modality is projected ``Linear(d, H)`` and zeroed where
   invalid; a gate MLP ``Linear(H, H) -> GELU -> Dropout -> Linear(H, 1)`` scores the projected token; the
   logit gets the modality's log-prior ``log(p_m / sum p)`` (face 0.85, behaviour 0.15 -> -0.1625,
   -1.8971; priors below 1e-6 are raised to 1e-6); invalid positions get ``-1e4``; softmax over
   modalities, multiplied by validity and renormalised (sum clamped at 1e-8), so a frame with one valid
   modality takes it whole and a frame with none is zero. Fused token = ``sum_m w_m x_m``.
2. **Audio tokens** ``Linear(d_a, H)``, zeroed where invalid.
3. **Latent bottleneck**: ``n_latents`` learnable tokens (init N(0, 0.02²)) cross-attend to the audio tokens
   (key padding mask), ``LN(latents + attn)``. Rows without any valid audio keep the raw latents.
4. **Frames query the latents**: ``LN(frame + MHA(LN(frame), latents))`` on rows with audio (others keep the
   frame tokens), then zeroed where the frame is padding or no frame modality is valid.
5. **Temporal encoder**: ``temporal_layers`` pre-norm ``nn.TransformerEncoderLayer`` (ff ``ff_mult·H``,
   GELU, key padding mask), zeroed on padding.
6. **Head** ``LN -> Linear(H, H) -> GELU -> Dropout -> Linear(H, 2)``.

With the defaults this is **1,716,484** parameters, the authors' count.

Training loss: :func:`~affectcache.trainers.models.fusion_losses.ccc_mse_loss` with
``0.7·(1-CCC_v) + 0.3·(1-CCC_a) + 0.01·MSE``. Evaluation: per-frame overlap mean of the windows, then a
moving average (kernel 7 valence, 13 arousal).

**The authors' audio-masking quirk.** Their training dataset marks a window's audio invalid when the
mouth is open less than 1 s or the face covers under 80 % of the window (``mask_audio: true``), but their
validation and test datasets are built without that flag, so at evaluation audio is always valid. The
rule is kept as :meth:`RAAVConfig.audio_valid` (``mask_audio_in_training``), and
``mask_audio_at_evaluation`` (off, as theirs) applies it at evaluation too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

import affectcache.trainers.fusion.tasks  # noqa: F401  (registers the fusion-windows view)
from affectcache.trainers.fusion.config import FusionVAConfig
from affectcache.trainers.models import ModelSpec, register_model
from affectcache.trainers.models.dcmmoe import masked_softmax
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput, require_modalities
from affectcache.trainers.models.fusion_losses import ccc_mse_loss

if TYPE_CHECKING:
    from collections.abc import Mapping

PRIOR_FLOOR = 1e-6
"""Smallest prior used (the authors' floor), so a zero prior gives a finite log-prior."""


@dataclass(frozen=True, kw_only=True)
class RAAVConfig(FusionVAConfig):
    """RAAV architecture, loss and evaluation settings (defaults: ``mm_cfg_va_s2s.yaml``)."""

    frame_modalities: tuple[str, ...] = ("face", "behaviour")
    """Frame-level modalities fused by the reliability gate, in order."""

    frame_input_dims: tuple[int, ...] = (258, 258)
    """Features per frame of each frame modality (embedding ‖ prediction); the trainer sets it from the
    store (``[]`` = only from the store)."""

    priors: tuple[float, ...] = (0.85, 0.15)
    """Prior reliability of each frame modality (face 0.85, multimodal behaviour 0.15), normalised to
    sum 1; their logs are added to the gate logits."""

    audio_modality: str = "audio"
    """Name of the token modality (the window's audio chunk tokens)."""

    audio_input_dim: int = 258
    """Features per audio token (WavLM head embedding 256 ‖ prediction 2); the trainer sets it from the
    store."""

    audio_tokens: int = 4
    """Audio chunk tokens per window (one per second of the 4 s window)."""

    window: int = 100
    """Frames per sample: the 4 s audio window at Aff-Wild2's 25 fps."""

    hop: int = 50
    """Frames between samples (2 s at 25 fps, the audio windows' hop)."""

    hidden: int = 256
    """Width of every projection, attention and the temporal encoder."""

    heads: int = 4
    """Attention heads (latent, frame-to-latent and temporal attention)."""

    dropout: float = 0.1
    """Dropout in the gate MLP, attentions, temporal encoder and head."""

    temporal_layers: int = 1
    """Pre-norm Transformer encoder layers over the frame sequence."""

    ff_mult: int = 4
    """Feed-forward width of the temporal encoder as a multiple of ``hidden`` (1024 = 4·256)."""

    n_latents: int = 4
    """Learnable latent tokens that summarise the audio."""

    window_s: float = 4.0
    """Audio window per sample, seconds (the WavLM windows: 4 s, hop 2 s)."""

    v_weight: float = 0.7
    """Valence weight of the CCC term."""

    a_weight: float = 0.3
    """Arousal weight of the CCC term."""

    mse_weight: float = 0.01
    """Weight of the MSE term added to the CCC term."""

    min_valid: int = 4
    """Fewer valid frames than this in a batch: the loss is the MSE alone."""

    smooth_valence: int = 7
    """Moving-average kernel (frames) on the merged valence predictions at evaluation."""

    smooth_arousal: int = 13
    """Moving-average kernel (frames) on the merged arousal predictions at evaluation."""

    mask_audio_in_training: bool = True
    """Training: mark a window's audio invalid unless the mouth is open ``audio_min_open_s`` and the face
    covers ``audio_min_coverage`` of the window (the authors' ``mask_audio: true``)."""

    mask_audio_at_evaluation: bool = False
    """Apply the same rule at evaluation (the authors never do: their val/test data always keep audio)."""

    audio_min_open_s: float = 1.0
    """Seconds of open mouth a window needs for its audio to count (training rule)."""

    audio_min_coverage: float = 0.8
    """Fraction of the window's frames with a face a window needs for its audio to count."""

    def log_priors(self) -> list[float]:
        """``log(p_m / sum p)``, priors floored at 1e-6 (face 0.85, behaviour 0.15 -> -0.1625, -1.8971)."""
        floored = [max(p, PRIOR_FLOOR) for p in self.priors]
        total = sum(floored)
        return [math.log(p / total) for p in floored]

    def audio_valid(self, open_s: float, coverage: float, *, training: bool) -> bool:
        """Whether a window's audio tokens count, by the mouth-open rule (see the module docstring)."""
        if not (self.mask_audio_in_training if training else self.mask_audio_at_evaluation):
            return True
        return open_s >= self.audio_min_open_s and coverage >= self.audio_min_coverage

    def streams(self) -> tuple[str, ...]:
        """Frame modalities, then the audio token stream."""
        return (*self.frame_modalities, self.audio_modality)

    def token_streams(self) -> dict[str, int]:
        """The audio stream, as ``audio_tokens`` chunk tokens per window."""
        return {self.audio_modality: self.audio_tokens}

    def validate(self) -> list[str]:
        """Every cross-field problem of this config."""
        problems = super().validate()
        if self.audio_tokens < 1:
            problems.append(f"audio_tokens must be >= 1, got {self.audio_tokens}")
        n = len(self.frame_modalities)
        if not n or len(set(self.frame_modalities)) != n or self.audio_modality in self.frame_modalities:
            problems.append(f"frame_modalities must be distinct, non-empty and not {self.audio_modality!r}, "
                            f"got {list(self.frame_modalities)}")
        dims = self.frame_input_dims
        if dims and (len(dims) != n or any(d < 1 for d in dims)):
            problems.append(f"frame_input_dims needs one positive size per frame modality ({n}), "
                            f"got {list(self.frame_input_dims)}")
        if len(self.priors) != n or any(p < 0 for p in self.priors) or not any(p > 0 for p in self.priors):
            problems.append(f"priors needs one non-negative value per frame modality ({n}), not all zero, "
                            f"got {list(self.priors)}")
        if self.hidden < 1 or self.heads < 1 or self.hidden % self.heads:
            problems.append(f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        if min(self.temporal_layers, self.ff_mult, self.n_latents, self.audio_input_dim, self.min_valid) < 1:
            problems.append("temporal_layers, ff_mult, n_latents, audio_input_dim and min_valid must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.v_weight, self.a_weight, self.mse_weight) < 0 or self.v_weight + self.a_weight <= 0:
            problems.append("v_weight, a_weight, mse_weight must be >= 0 with v_weight + a_weight > 0")
        if self.smooth_valence < 1 or self.smooth_arousal < 1:
            problems.append("smoothing kernels must be >= 1 (1 = no smoothing)")
        if self.window_s <= 0 or self.audio_min_open_s < 0 or not 0 <= self.audio_min_coverage <= 1:
            problems.append("need window_s > 0, audio_min_open_s >= 0, 0 <= audio_min_coverage <= 1")
        return problems


def raav_config() -> RAAVConfig:
    """``raav``: the authors' best configuration (1,716,484 parameters)."""
    return RAAVConfig()


DEMO_AUDIO_FRAMES = "audio-frames"
"""The demo preset's second frame stream: the audio head's predictions on the frame clock."""


def raav_demo_config() -> RAAVConfig:
    """Small settings for the demo corpus, whose only heads are face (valence) and audio (arousal).

    Differs from the paper's preset in the frame streams, for a stated reason: the demo has no behaviour
    head, and its arousal (heard only in the voice) changes within a 4 s window (periods 4-25 s), while
    RAAV's audio context is one order-free set of tokens per window, so every frame of a window gets
    nearly the same audio context. Window-constant *true* arousal, overlap-meaned and smoothed like
    RAAV's output, reaches only 0.48 held-out CCC on the demo (a face-only-gate RAAV got 0.50). So the
    audio head's frame-aligned predictions (RAS's resample + overlap-mean alignment, §1.6) take the
    behaviour stream's place in the reliability gate, with its prior (face 0.85, second stream 0.15);
    the window's audio tokens stay the auxiliary context. Map the streams to store modalities with
    ``input_modalities`` (``face``, ``audio-frames``, ``audio``).
    """
    return RAAVConfig(frame_modalities=("face", DEMO_AUDIO_FRAMES), frame_input_dims=(), priors=(0.85, 0.15),
                      hidden=32, heads=4, epochs=30, lr=1e-3, early_stop_patience=10, batch_size=8,
                      bootstrap_resamples=200)


def reliability_weights(logits: torch.Tensor, valid: torch.Tensor, log_priors: torch.Tensor) -> torch.Tensor:
    """Per-frame modality weights: ``(B, T, M)`` gate logits + log-priors, softmax over valid modalities.

    Args:
        logits: ``(B, T, M)`` gate MLP outputs.
        valid: ``(B, T, M)`` bool.
        log_priors: ``(M,)``.

    Returns:
        ``(B, T, M)`` weights summing to 1 where any modality is valid, all zero elsewhere.
    """
    return masked_softmax(logits + log_priors, valid.bool())


class RAAVModel(nn.Module):  # type: ignore[misc]
    """Reliability-aware audio-visual fusion (see the module docstring)."""

    def __init__(self, config: RAAVConfig) -> None:
        super().__init__()
        config.check()
        if not config.frame_input_dims:
            raise ValueError("raav: frame_input_dims is empty; build the model through the trainer (it reads "
                             "the widths from the store) or set frame_input_dims")
        self.config = config
        h = config.hidden
        self.frame_projectors = nn.ModuleDict({
            m: nn.Linear(d, h)
            for m, d in zip(config.frame_modalities, config.frame_input_dims, strict=True)})
        self.frame_gates = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, 1))
            for m in config.frame_modalities})
        self.audio_projector = nn.Linear(config.audio_input_dim, h)
        self.audio_latents = nn.Parameter(torch.randn(1, config.n_latents, h) * 0.02)
        self.latent_attention = nn.MultiheadAttention(h, config.heads, dropout=config.dropout,
                                                      batch_first=True)
        self.frame_attention = nn.MultiheadAttention(h, config.heads, dropout=config.dropout,
                                                     batch_first=True)
        self.norm_frame_query = nn.LayerNorm(h)
        self.norm_latents = nn.LayerNorm(h)
        self.norm_after_audio = nn.LayerNorm(h)
        self.temporal = nn.ModuleList([
            nn.TransformerEncoderLayer(h, config.heads, dim_feedforward=config.ff_mult * h,
                                       dropout=config.dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(config.temporal_layers)])
        self.head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(h, 2))
        self.register_buffer("log_priors", torch.tensor(config.log_priors(), dtype=torch.float32))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Frame modalities, then the audio modality."""
        return (*self.config.frame_modalities, self.config.audio_modality)

    def forward(self, batch: FusionBatch) -> FusionOutput:
        """Predict ``(B, L, 2)`` over the window's frames."""
        cfg = self.config
        dims = {**dict(zip(cfg.frame_modalities, cfg.frame_input_dims, strict=True)),
                cfg.audio_modality: cfg.audio_input_dim}
        require_modalities(batch, self.modalities, dims, "raav")
        seq = batch.mask.bool()
        reps, logits, valids = [], [], []
        for m in cfg.frame_modalities:
            v = batch.valid[m].bool()
            if v.shape != seq.shape:
                raise ValueError(f"raav: frame modality {m!r} has {tuple(v.shape)} rows, the frame mask "
                                 f"{tuple(seq.shape)}")
            x = self.frame_projectors[m](batch.inputs[m].float()) * v.unsqueeze(-1)
            reps.append(x)
            logits.append(self.frame_gates[m](x).squeeze(-1))
            valids.append(v)
        valid = torch.stack(valids, dim=2)                                         # (B, L, M)
        weights = reliability_weights(torch.stack(logits, dim=2), valid, self.log_priors)
        any_valid = valid.any(dim=2)
        frames = (torch.stack(reps, dim=2) * weights.unsqueeze(-1)).sum(2)          # (B, L, H)

        audio_valid = batch.valid[cfg.audio_modality].bool()
        audio = self.audio_projector(batch.inputs[cfg.audio_modality].float()) * audio_valid.unsqueeze(-1)
        has_audio = audio_valid.any(dim=1)                                          # (B,)
        # Rows without valid audio would mask every key (NaN): let them attend unmasked, then discard.
        kpm = ~(audio_valid | ~has_audio.unsqueeze(1))
        raw = self.audio_latents.expand(frames.shape[0], -1, -1)
        attended, _ = self.latent_attention(raw, audio, audio, key_padding_mask=kpm, need_weights=False)
        keep = has_audio.view(-1, 1, 1)
        latents = torch.where(keep, self.norm_latents(raw + attended), raw)
        ctx, _ = self.frame_attention(self.norm_frame_query(frames), latents, latents, need_weights=False)
        tokens = torch.where(keep, self.norm_after_audio(frames + ctx), frames)
        tokens = tokens * (seq & any_valid).unsqueeze(-1)

        for layer in self.temporal:
            tokens = layer(tokens, src_key_padding_mask=~seq)
        tokens = tokens * seq.unsqueeze(-1)
        embedding = self.head[3](self.head[2](self.head[1](self.head[0](tokens))))
        preds = self.head[4](embedding)
        return FusionOutput(
            preds=preds, embedding=embedding,
            weights={m: weights[..., i] for i, m in enumerate(cfg.frame_modalities)},
            extras={"audio_latents": latents, "frame_tokens": frames})

    def loss(self, output: FusionOutput, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(0.7·(1 - CCC_v) + 0.3·(1 - CCC_a)) + 0.01·MSE`` over the batch's valid frames."""
        cfg = self.config
        return ccc_mse_loss(output.preds, targets, valid, v_weight=cfg.v_weight, a_weight=cfg.a_weight,
                            mse_weight=cfg.mse_weight, min_valid=cfg.min_valid)


def build_raav(config: RAAVConfig, input_dims: Mapping[str, int]) -> RAAVModel:
    """The model for the store's stream widths (``input_dims`` per stream name)."""
    missing = [m for m in config.streams() if m not in input_dims]
    if missing:
        raise ValueError(f"raav: no width for streams {missing}; got {sorted(input_dims)}")
    frame_dims = tuple(int(input_dims[m]) for m in config.frame_modalities)
    return RAAVModel(config.replace(frame_input_dims=frame_dims,
                                    audio_input_dim=int(input_dims[config.audio_modality])))


register_model(ModelSpec(name="raav", config_type=RAAVConfig, build=build_raav,
                         summary="Team RAS RAAV: reliability-gated frame streams, audio latents",
                         presets={"demo": raav_demo_config}))
