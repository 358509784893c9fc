"""Kookmin's distance-aware soft-prompt model for valence-arousal (Jung, Park, Lim; seed 001).

No public code exists; everything below follows the poster and the paper's abstract, and every choice the
paper leaves open is a documented config field.

- **Streams.** CLIP ViT-B/16 embeddings of the face crops (``visual``, on the frame clock) and AST window
  embeddings (``audio``, one token per window), each ``Linear(d, H) -> LayerNorm -> Dropout`` and then a
  bidirectional GRU (``H/2`` per direction, so its output is ``H`` wide), run over each row's valid
  prefix (packed sequences: padding never enters the backward direction).
- **Cross-modal attention**: visual frames query the audio tokens (``nn.MultiheadAttention``, key padding
  mask = invalid audio).
- **Gated multimodal unit** (Arevalo et al.): ``h_v = tanh(W_v v)``, ``h_a = tanh(W_a c)``,
  ``z = sigmoid(W_z [v; c])``, ``h = z·h_v + (1 - z)·h_a``; on rows without any valid audio ``z = 1``, so
  the visual cue is kept whole when audio is unreliable. ``mean(z)`` per frame is the visual share in the
  contribution maps, ``1 - mean(z)`` the audio share.
- **VA head** ``Linear(H, H) -> GELU -> Dropout -> Linear(H, 2)`` (optionally ``tanh``).
- **Semantic region guidance.** The VA plane is split into a 3×3 grid of regions, each described by a text
  prompt encoded by the *same* CLIP model's text tower that produced the image embeddings; the prompt
  embeddings are given to the model (``prompt_embeddings``, a buffer, so checkpoints carry them). The
  fused frame feature is projected to the text width and ``region_logits_k = cos(proj(h), e_k) / tau``.
  Targets become Gaussian soft labels over the region centres
  (:func:`~affectcache.trainers.models.fusion_losses.soft_region_labels`) and the loss
  is ``(1 - CCC_v) + (1 - CCC_a) + lambda·KL(p || softmax(logits))`` (lambda 0.2, the paper's best).

The paper's best row fine-tunes CLIP; from cached arrays the image tower is frozen, which is their
"CLIP frozen" configuration (0.4438 mean CCC on Aff-Wild2 validation).

**Training** (``affectcache train kookmin``) goes through part 1's VA machinery with the
:class:`~affectcache.trainers.fusion.kookmin_task.KookminTask`: ``clip-face`` rows and ``ast`` windows on
the label frame clock (the AST windows expanded to the frames they cover), frame windows of ``window``
frames every ``hop`` (the paper gives no sequence length: 300 frames every 150 [I], 10 s at Aff-Wild2's
30 fps), the prompt bank encoded once at set-up by the text tower of the model named in ``clip-face``'s
provenance and kept in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import affectcache.trainers.fusion.kookmin_task  # noqa: F401  (registers the kookmin-windows view)
from affectcache.trainers.fusion.config import FusionVAConfig
from affectcache.trainers.models import ModelSpec, register_model
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput, require_modalities
from affectcache.trainers.models.fusion_losses import soft_prompt_loss

if TYPE_CHECKING:
    from collections.abc import Mapping

CLIP_IMAGE_EXTRACTORS = ("clip-face", "clip-scene")
"""Extractors whose embeddings the prompt text tower can be resolved from."""

_THIRDS = (-2.0 / 3.0, 0.0, 2.0 / 3.0)

DEFAULT_CENTRES: tuple[tuple[float, float], ...] = tuple((v, a) for v in _THIRDS for a in _THIRDS)
"""Centres of a uniform 3×3 grid on [-1, 1]², valence-major: (-2/3, -2/3), (-2/3, 0), ..., (2/3, 2/3)."""

_VALENCE_WORDS = ("negative, unpleasant", "neutral", "positive, pleasant")
_AROUSAL_WORDS = ("calm, low-energy", "moderately activated", "excited, high-energy")

DEFAULT_PROMPTS: tuple[str, ...] = tuple(
    f"a photo of a face showing a {v} and {a} emotion" for v in _VALENCE_WORDS for a in _AROUSAL_WORDS)
"""One prompt per default centre, in the same valence-major order."""

@dataclass(frozen=True, kw_only=True)
class KookminConfig(FusionVAConfig):
    """Inputs, architecture and loss of the soft-prompt model (paper-level; open choices are marked [I])."""

    view: ClassVar[str] = "kookmin-windows"

    input_modalities: tuple[str, ...] = ("clip-face", "ast")
    """Store modality of the visual stream (CLIP image embeddings of the face crops: its provenance names
    the CLIP model whose text tower encodes the prompts) and of the audio stream (AST windows)."""

    window: int = 300
    """Frames per training sequence (the paper states none: 10 s at Aff-Wild2's 30 fps) [I]."""

    hop: int = 150
    """Frames between sequence starts [I]."""

    face_slot: int = 0
    """Which face slot's embedding the visual stream reads when ``clip-face`` was built with the face
    policy ``all`` (one slot per face track); rows whose slot holds no face are invalid."""

    visual_modality: str = "visual"
    """Name of the frame-level image embedding stream (the store's ``clip-face``)."""

    audio_modality: str = "audio"
    """Name of the audio window stream (the store's ``ast``, expanded to the frames each window covers)."""

    visual_dim: int = 512
    """Image embedding width (CLIP ViT-B/16 projection: 512); the trainer sets it from the store."""

    audio_dim: int = 768
    """Audio embedding width (AST pooled: 768); the trainer sets it from the store."""

    text_dim: int | None = None
    """Prompt embedding width; None: ``visual_dim`` (CLIP projects images and texts into one space, so
    the text tower of the model that made the image embeddings gives vectors of the image width). Set it
    only for a model whose text projection differs."""

    hidden: int = 256
    """Shared embedding width both streams are projected to (the paper: 256)."""

    gru_layers: int = 1
    """Bidirectional GRU layers per stream [I]."""

    heads: int = 4
    """Heads of the visual-to-audio cross attention [I]."""

    dropout: float = 0.1
    """Dropout in projections, GRU (between layers), attention and head [I]."""

    output: Literal["linear", "tanh"] = "tanh"
    """Head output: ``tanh`` keeps predictions in the VA range [-1, 1] [I]."""

    region_centres: tuple[tuple[float, float], ...] = DEFAULT_CENTRES
    """(valence, arousal) centre of each region; default: the 3×3 grid centres {-2/3, 0, 2/3}² [I]."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    """Text describing each region, in the order of ``region_centres`` [I]."""

    sigma: float = 0.3
    """Width of the Gaussian soft labels over centre distance (adjacent centres are 2/3 apart) [I]."""

    tau: float = 0.07
    """Temperature dividing the prompt cosines (CLIP's initial temperature) [I]."""

    kl_weight: float = 0.2
    """lambda of the region KL term (the paper's best)."""

    guidance_source: Literal["fused", "visual"] = "fused"
    """Feature projected onto the prompts: the gated fused frame (default) or the visual GRU output [I]."""

    def streams(self) -> tuple[str, ...]:
        """Visual, then audio (both on the frame clock)."""
        return (self.visual_modality, self.audio_modality)

    def prompt_width(self) -> int:
        """The prompt embedding width: ``text_dim``, else the image width."""
        return self.text_dim if self.text_dim is not None else self.visual_dim

    def validate(self) -> list[str]:
        """Every cross-field problem of this config."""
        problems = super().validate()
        if self.face_slot < 0:
            problems.append(f"face_slot must be >= 0, got {self.face_slot}")
        if self.visual_modality == self.audio_modality:
            problems.append("visual_modality and audio_modality must differ")
        if min(self.visual_dim, self.audio_dim, self.prompt_width(), self.gru_layers, self.heads) < 1:
            problems.append("visual_dim, audio_dim, text_dim, gru_layers and heads must be >= 1")
        if self.hidden < 2 or self.hidden % 2 or self.hidden % self.heads:
            problems.append(f"hidden ({self.hidden}) must be even (two GRU directions) and a multiple of "
                            f"heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.region_centres) < 2 or len(self.prompts) != len(self.region_centres):
            problems.append(f"need >= 2 region centres and one prompt each, got {len(self.region_centres)} "
                            f"centres and {len(self.prompts)} prompts")
        if any(not p.strip() for p in self.prompts):
            problems.append("prompts must not be empty")
        if self.sigma <= 0 or self.tau <= 0 or self.kl_weight < 0:
            problems.append(f"need sigma > 0, tau > 0, kl_weight >= 0; got {self.sigma}, {self.tau}, "
                            f"{self.kl_weight}")
        return problems


def kookmin_config() -> KookminConfig:
    """``kookmin``: CLIP ViT-B/16 + AST, BiGRU, cross-attention, gated fusion, 3×3 prompts, lambda 0.2."""
    return KookminConfig()


def kookmin_demo_config() -> KookminConfig:
    """Small settings for the demo corpus (tiny stand-in CLIP: 16-d projections)."""
    return KookminConfig(hidden=32, heads=4, window=100, hop=50, epochs=25, lr=2e-3,
                         early_stop_patience=8, batch_size=8, bootstrap_resamples=200)


def _prefix_lengths(valid: torch.Tensor) -> torch.Tensor:
    """Length of each row up to its last valid position (at least 1, as packing requires)."""
    positions = torch.arange(1, valid.shape[1] + 1, device=valid.device)
    return (valid.long() * positions).amax(dim=1).clamp_min(1)


class _Stream(nn.Module):  # type: ignore[misc]
    """Projection + bidirectional GRU over each row's valid prefix."""

    def __init__(self, dim: int, config: KookminConfig) -> None:
        super().__init__()
        h = config.hidden
        self.projection = nn.Sequential(nn.Linear(dim, h), nn.LayerNorm(h), nn.Dropout(config.dropout))
        self.gru = nn.GRU(h, h // 2, num_layers=config.gru_layers, batch_first=True, bidirectional=True,
                          dropout=config.dropout if config.gru_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.projection(x.float()) * valid.unsqueeze(-1)
        lengths = _prefix_lengths(valid)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out * valid.unsqueeze(-1)


class KookminModel(nn.Module):  # type: ignore[misc]
    """Distance-aware soft-prompt VA model (see the module docstring).

    Args:
        config: The architecture.
        prompt_embeddings: ``(K, text_dim)`` text embeddings of ``config.prompts``, from the CLIP text
            tower matching the image embeddings.
    """

    def __init__(self, config: KookminConfig, prompt_embeddings: torch.Tensor) -> None:
        super().__init__()
        config.check()
        k = len(config.region_centres)
        width = config.prompt_width()
        if tuple(prompt_embeddings.shape) != (k, width):
            raise ValueError(f"kookmin: prompt_embeddings must be ({k}, {width}) -- one text_dim "
                             f"vector per region prompt -- got {tuple(prompt_embeddings.shape)}")
        self.config = config
        h = config.hidden
        self.visual = _Stream(config.visual_dim, config)
        self.audio = _Stream(config.audio_dim, config)
        self.cross_attention = nn.MultiheadAttention(h, config.heads, dropout=config.dropout,
                                                     batch_first=True)
        self.gmu_visual = nn.Linear(h, h)
        self.gmu_audio = nn.Linear(h, h)
        self.gmu_gate = nn.Linear(2 * h, h)
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, 2))
        self.to_text = nn.Linear(h, width)
        self.register_buffer("prompt_embeddings", F.normalize(prompt_embeddings.float(), dim=-1))
        self.register_buffer("region_centres", torch.tensor(config.region_centres, dtype=torch.float32))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Visual, then audio."""
        return (self.config.visual_modality, self.config.audio_modality)

    def forward(self, batch: FusionBatch) -> FusionOutput:
        """Predict ``(B, T, 2)`` and the ``(B, T, K)`` region logits."""
        cfg = self.config
        vm, am = cfg.visual_modality, cfg.audio_modality
        require_modalities(batch, self.modalities, {vm: cfg.visual_dim, am: cfg.audio_dim}, "kookmin")
        seq = batch.mask.bool()
        v_valid = batch.valid[vm].bool() & seq
        a_valid = batch.valid[am].bool()
        v = self.visual(batch.inputs[vm], v_valid)                                 # (B, T, H)
        a = self.audio(batch.inputs[am], a_valid)                                  # (B, S, H)
        has_audio = a_valid.any(dim=1)
        # Rows without valid audio would mask every key (NaN); their gate is forced to visual below.
        kpm = ~(a_valid | ~has_audio.unsqueeze(1))
        c, _ = self.cross_attention(v, a, a, key_padding_mask=kpm, need_weights=False)
        z = torch.sigmoid(self.gmu_gate(torch.cat([v, c], dim=-1)))
        z = torch.where(has_audio.view(-1, 1, 1), z, torch.ones_like(z))
        fused = z * torch.tanh(self.gmu_visual(v)) + (1.0 - z) * torch.tanh(self.gmu_audio(c))
        fused = fused * seq.unsqueeze(-1)
        embedding = self.head[2](self.head[1](self.head[0](fused)))
        preds = self.head[3](embedding)
        if cfg.output == "tanh":
            preds = torch.tanh(preds)
        guide = fused if cfg.guidance_source == "fused" else v
        region_logits = F.normalize(self.to_text(guide), dim=-1) @ self.prompt_embeddings.T / cfg.tau
        visual_share = z.mean(-1) * seq
        return FusionOutput(preds=preds, embedding=embedding,
                            weights={vm: visual_share, am: (1.0 - z.mean(-1)) * seq},
                            extras={"region_logits": region_logits})

    def loss(self, output: FusionOutput, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(1 - CCC_v) + (1 - CCC_a) + kl_weight · KL(soft labels || softmax(region logits))``."""
        return soft_prompt_loss(output.preds, output.extras["region_logits"], targets, valid,
                                self.region_centres, sigma=self.config.sigma, kl_weight=self.config.kl_weight)


def prompt_encoder_model(image_provenance: Mapping[str, Any]) -> tuple[str, str | None]:
    """The CLIP model (hub id or local folder, revision) that made a stored image modality.

    Raises:
        ValueError: The modality was not made by a CLIP image extractor, or its local model folder has
            changed since (the text tower would not match the image tower).
    """
    from affectcache.extractors.common.pretrained import model_identity

    extractor = image_provenance.get("extractor")
    if extractor not in CLIP_IMAGE_EXTRACTORS:
        raise ValueError(f"kookmin needs CLIP image embeddings ({', '.join(CLIP_IMAGE_EXTRACTORS)}) to "
                         f"encode its prompts with the same model; the visual modality was made by "
                         f"{extractor!r}")
    config = image_provenance.get("config", {})
    model, revision = str(config["model"]), config.get("revision")
    stored = image_provenance.get("model", {}).get("sha256")
    if stored is not None and model_identity(model, revision)["sha256"] != stored:
        raise ValueError(f"the CLIP folder {model} changed since the image embeddings were made (sha256 "
                         f"differs); rebuild {extractor} or restore the folder")
    return model, revision


def encode_region_prompts(config: KookminConfig, image_provenance: Mapping[str, Any],
                          device: str = "cpu") -> torch.Tensor:
    """``(K, text_dim)`` embeddings of ``config.prompts`` by the text tower of the CLIP model that made
    the image embeddings (its projected text features, as CLIP compares them with image features).

    Raises:
        ValueError: See :func:`prompt_encoder_model`; or the text width differs from
            ``config.prompt_width()`` (pass the built model's config: it carries the store's image width).
    """
    from affectcache.extractors.language.text_embedding import TEXT_ENCODERS, clip_text

    model, revision = prompt_encoder_model(image_provenance)
    encoder = TEXT_ENCODERS["clip-text"](clip_text(model=model, revision=revision, device=device))
    vectors = torch.from_numpy(encoder.encode(list(config.prompts)))
    if vectors.shape[1] != config.prompt_width():
        raise ValueError(f"the CLIP text tower of {model} gives {vectors.shape[1]}-d prompts; set "
                         f"text_dim={vectors.shape[1]}")
    return vectors


def build_kookmin(config: KookminConfig, input_dims: Mapping[str, int]) -> KookminModel:
    """The model for the store's stream widths; its prompt bank is zeros until the task encodes the
    prompts (training) or a checkpoint is loaded (prediction: the bank is a buffer of the checkpoint)."""
    missing = [m for m in config.streams() if m not in input_dims]
    if missing:
        raise ValueError(f"kookmin: no width for streams {missing}; got {sorted(input_dims)}")
    config = config.replace(visual_dim=int(input_dims[config.visual_modality]),
                            audio_dim=int(input_dims[config.audio_modality]))
    return KookminModel(config, torch.zeros(len(config.region_centres), config.prompt_width()))


register_model(ModelSpec(name="kookmin", config_type=KookminConfig, build=build_kookmin,
                         summary="Kookmin distance-aware soft prompts: CLIP faces + AST, BiGRU, gated fusion",
                         presets={"demo": kookmin_demo_config}))
