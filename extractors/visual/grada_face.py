"""``grada-face``: the RAS (ABAW 10) GRADA face-affect model on face crops: 256-d embedding, VA, emotions.

Architecture (methods.md §1.2): EfficientNet-B1 trunk (pooled 1280-d, classifier removed) → Dropout(0.1) →
Linear(1280, 256) → BatchNorm1d → Tanh = the **embedding**; heads Linear(256, 8) (emotion logits, class
order N, H, Sa, Su, F, D, A, C) and Linear(256, 2) (valence, arousal). Module names follow the published
model (``model``, ``dropout_after_pretrained``, ``embeddings_layer``, ``batchnorm``,
``activation_embeddings``, ``classifier``, ``regression``) and the trunk has torchvision's EfficientNet
key layout (:mod:`affectcache.extractors.common.efficientnet`), so checkpoints load unchanged.

**Weights are user-provided** (``weights``: a ``.pth``/``.safetensors`` file; the RAS weights are not
public). Keys may carry a prefix (``weights_prefix``, e.g. ``module.``); a bare torchvision trunk
(``features.*``) is accepted as the ``model.`` part.

Preprocessing exactly as RAS: RGB crop → aspect-preserving bilinear resize so the longer side is 240 →
centred on a black 240×240 canvas → [0, 1] → ImageNet mean/std. Crops come from the stored ``face`` boxes
(:mod:`affectcache.extractors.common.image_embedding`).

Values (float32, ``(n, 266)``; ``(n, slots, 266)`` under the ``all`` face policy), described in the entry
attrs as ``columns``: ``0:256`` embedding, ``256:258`` ``va_pred`` (valence, arousal), ``258:266``
``emo_probs`` (softmax over the 8 classes in :data:`EMOTIONS` order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from affectcache.extractors.common.clip_preprocess import map_images
from affectcache.extractors.common.image_embedding import FaceCropConfig, FaceCropEmbedder
from affectcache.extractors.common.pretrained import load_state_dict_file, resolve_dtype, weights_sha256
from affectcache.extractors.core.config import runtime_only
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.registry import register_extractor

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
"""Emotion head classes, in output order (N, H, Sa, Su, F, D, A, C)."""
EMBEDDING_DIM = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class GradaConfig(FaceCropConfig):
    """Settings of ``grada-face``. The checkpoint is user-provided (``weights``)."""

    uses_gpu: ClassVar[bool] = True

    batch_size: int = runtime_only(64)
    """Crops per forward; crops of several videos share a batch."""

    weights: str | None = None
    """Path of the GRADA checkpoint (torchvision EfficientNet key layout for the trunk); required to run."""

    weights_prefix: str = ""
    """Prefix stripped from every checkpoint key before loading (e.g. ``module.``)."""

    image_size: int = 240
    """Input canvas side in pixels (240 for B1, as RAS)."""

    trunk_width: float = 1.0
    """EfficientNet width multiplier (B1: 1.0). Other values only for scaled-down test stand-ins."""

    trunk_depth: float = 1.1
    """EfficientNet depth multiplier (B1: 1.1). Other values only for scaled-down test stand-ins."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = runtime_only("auto")
    """Compute dtype: ``auto`` = float32 on CPU, bfloat16/float16 on CUDA (within float tolerance)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.image_size < 32:
            problems.append(f"image_size must be >= 32, got {self.image_size}")
        if not (0 < self.trunk_width <= 4 and 0 < self.trunk_depth <= 4):
            problems.append("trunk_width and trunk_depth must be in (0, 4]")
        return problems


def build_grada(width: float = 1.0, depth: float = 1.1) -> Any:
    """The GRADA network (random weights; eval mode is the caller's call)."""
    from torch import nn

    from affectcache.extractors.common.efficientnet import build_efficientnet

    class Grada(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = build_efficientnet(width, depth)
            self.dropout_after_pretrained = nn.Dropout(0.1)
            self.embeddings_layer = nn.Linear(self.model.out_features, EMBEDDING_DIM)
            self.batchnorm = nn.BatchNorm1d(EMBEDDING_DIM)
            self.activation_embeddings = nn.Tanh()
            self.classifier = nn.Linear(EMBEDDING_DIM, len(EMOTIONS))
            self.regression = nn.Linear(EMBEDDING_DIM, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            emb = self.activation_embeddings(self.batchnorm(self.embeddings_layer(
                self.dropout_after_pretrained(self.model(x)))))
            return emb, self.regression(emb), self.classifier(emb)

    return Grada()


def grada_input(crop: npt.NDArray[np.uint8], size: int = 240) -> npt.NDArray[np.float32]:
    """RAS preprocessing of one RGB crop: ``(3, size, size)`` float32 (see the module docstring)."""
    canvas = grada_letterbox(crop, size).astype(np.float32) / 255.0
    normed = (canvas - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1), dtype=np.float32)


def grada_letterbox(crop: npt.NDArray[np.uint8], size: int = 240) -> npt.NDArray[np.uint8]:
    """The crop resized (bilinear) to fit ``size`` × ``size``, centred on black: ``(size, size, 3)``
    uint8 (black is 0, exactly what the float canvas's padding holds before normalisation)."""
    from PIL import Image

    h, w = crop.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.BILINEAR))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top: top + nh, left: left + nw] = resized
    return canvas


def grada_normalise(canvases: torch.Tensor) -> torch.Tensor:
    """``(n, 3, size, size)`` float32 network input of ``(n, size, size, 3)`` uint8 letterboxed crops, on
    their device, with :func:`grada_input`'s float32 arithmetic (same numbers)."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=canvases.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=canvases.device)
    normed = (canvases.to(torch.float32) / 255.0 - mean) / std
    return normed.permute(0, 3, 1, 2).contiguous()


def load_grada_weights(module: Any, checkpoint: str, prefix: str = "") -> None:
    """Load a GRADA checkpoint into ``module`` strictly (every tensor present, nothing left over).

    Raises:
        ConfigError: Missing, unexpected or wrongly shaped tensors (the first few are named).
    """
    tensors = load_state_dict_file(checkpoint)
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if state and all(k.startswith("features.") or k.startswith("classifier.") for k in state):
        # A bare torchvision trunk: it is the "model" part; its 1000-class classifier is not used.
        state = {f"model.{k}": v for k, v in state.items() if k.startswith("features.")}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected)
                    if tuple(state[k].shape) != tuple(expected[k].shape))
    only_head_missing = missing and all(not k.startswith("model.") for k in missing)
    if (missing and not only_head_missing) or unexpected or shapes:
        raise ConfigError(f"checkpoint {checkpoint} does not match GRADA (EfficientNet trunk + head): "
                          f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {shapes[:5]}")
    if missing:
        raise ConfigError(f"checkpoint {checkpoint} holds only the EfficientNet trunk; the GRADA head "
                          f"({missing[:3]}...) is needed too")
    module.load_state_dict(state)


@dataclass(frozen=True)
class LoadedGrada:
    """A GRADA network ready to run."""

    model: Any
    device: Any
    dtype: Any
    size: int

    def prepare(self, images: list[npt.NDArray[np.uint8]]) -> Any:
        """The network input of RGB crops (letterboxed, normalised)."""
        import torch

        # uint8 canvases: normalised in forward on the model's device (4x fewer bytes to copy, and the
        # CPU that feeds a GPU only resizes).
        batch = torch.from_numpy(np.stack(map_images(lambda im: grada_letterbox(im, self.size), images)))
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def forward(self, batch: Any) -> npt.NDArray[np.float32]:
        """``(n, 266)``: embedding, VA, emotion probabilities of prepared crops."""
        import torch

        batch = grada_normalise(batch.to(self.device, non_blocking=True)).to(self.dtype)
        with torch.inference_mode():
            emb, va, logits = self.model(batch)
            out = torch.cat([emb, va, torch.softmax(logits.float(), dim=-1).to(emb.dtype)], dim=-1)
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)


@register_extractor
class GradaFaceExtractor(FaceCropEmbedder[GradaConfig]):
    """GRADA embedding, VA and emotion probabilities of the face crop of every ``face`` row."""

    name = "grada-face"
    version = "1"
    config_type = GradaConfig
    libraries = ("torch",)
    summary = "RAS GRADA (EfficientNet-B1) face affect: 256-d embedding + VA + 8 emotion probs (own weights)"

    @classmethod
    def demo_config(cls, workdir: Path) -> GradaConfig | None:
        weights = os.environ.get("AFFECTCACHE_DEMO_GRADA_WEIGHTS")
        return GradaConfig(weights=weights, max_side=320) if weights else None

    def model_info(self) -> dict[str, Any]:
        ref = self.config.weights
        return {"id": str(Path(ref).expanduser().resolve()) if ref else None, "revision": None,
                "sha256": weights_sha256(ref)}

    def _load(self) -> LoadedGrada:
        import torch

        cfg = self.config
        if not cfg.weights:
            raise ConfigError("grada-face: set weights= to the GRADA checkpoint (user-provided; the RAS "
                              "weights are not public)")
        model = build_grada(cfg.trunk_width, cfg.trunk_depth)
        load_grada_weights(model, cfg.weights, cfg.weights_prefix)
        device = torch.device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, cfg.device)
        return LoadedGrada(model=model.to(device, dtype).eval(), device=device, dtype=dtype,
                           size=cfg.image_size)

    @property
    def output_dim(self) -> int:
        return EMBEDDING_DIM + 2 + len(EMOTIONS)

    def feature_names(self) -> tuple[str, ...]:
        """``emb_0`` ... embedding columns, then ``valence``, ``arousal`` and the emotion probabilities."""
        return (*(f"emb_{i}" for i in range(EMBEDDING_DIM)), "valence", "arousal", *EMOTIONS)

    def _value_attrs(self) -> dict[str, Any]:
        return {"dim": self.output_dim, "emotions": list(EMOTIONS),
                "columns": {"embedding": [0, EMBEDDING_DIM], "va_pred": [EMBEDDING_DIM, EMBEDDING_DIM + 2],
                            "emo_probs": [EMBEDDING_DIM + 2, self.output_dim]},
                "va_order": ["valence", "arousal"]}
