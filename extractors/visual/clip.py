"""``clip-face`` and ``clip-scene``: CLIP projected image embeddings of face crops and of whole frames.

- ``clip-face`` (``requires = ("face",)``): one embedding per ``face`` row, of the crop cut in memory from
  the stored box (margin and square padding in the config; SCD's pixel-averaged crop under the ``average``
  face policy, one embedding per slot under ``all``). Rows and ``mask`` follow ``face``.
- ``clip-scene``: one embedding per sampled whole frame (SCD's "behaviour by scene" encoder).

The embedding is ``CLIPModel.get_image_features(...).pooler_output``: the visual projection of the pooled
token, 512-d for ViT-B, **not** L2-normalised (normalise when comparing). Preprocessing is the model's own
image processor (resize shorter side, centre crop, CLIP normalisation; transformers falls back to its
PIL processor without torchvision). Crops from many videos share a batch; on CUDA, fp16/bf16 (``dtype``)
and pinned host memory are used.

Defaults: ``openai/clip-vit-base-patch16`` (Kookmin); :func:`scd_clip_scene_config` is SCD's preset
(``openai/clip-vit-base-patch32``, 30 uniform frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np

from affectcache.extractors.common.clip_preprocess import ClipPreprocessor
from affectcache.extractors.common.image_embedding import FaceCropConfig, FaceCropEmbedder, FrameEmbedder
from affectcache.extractors.common.pretrained import from_pretrained_kwargs, model_identity, resolve_dtype
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.media.frame_sampling import FrameSamplingConfig

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

DEFAULT_CLIP = "openai/clip-vit-base-patch16"
"""Default CLIP (Kookmin's visual encoder)."""
SCD_CLIP = "openai/clip-vit-base-patch32"
"""SCD-MMPSR's CLIP (note B/32)."""


@dataclass(frozen=True, kw_only=True)
class ClipModelConfig(ExtractorConfig):
    """Which CLIP model embeds the images, and how it runs."""

    uses_gpu: ClassVar[bool] = True

    batch_size: int = runtime_only(64)
    """Images per forward; images of several videos share a batch."""

    model: str = DEFAULT_CLIP
    """Hugging Face hub id or local folder of a ``CLIPModel`` with its image processor
    (``openai/clip-vit-base-patch32`` is SCD's)."""

    revision: str | None = None
    """Hub revision (commit) to pin; ignored for local folders."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = runtime_only("auto")
    """Compute dtype: ``auto`` = float32 on CPU, bfloat16/float16 on CUDA (within float tolerance)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.model:
            problems.append("model must name a hub id or a local folder")
        if self.dtype != "float32" and self.dtype != "auto" and not self.device.startswith("cuda"):
            problems.append(f"dtype={self.dtype!r} needs a CUDA device; use float32 or auto on CPU")
        return problems


@dataclass(frozen=True, kw_only=True)
class ClipFaceConfig(FaceCropConfig, ClipModelConfig):
    """Settings of ``clip-face``: the CLIP model and how crops are cut from the ``face`` boxes."""


@dataclass(frozen=True, kw_only=True)
class ClipSceneConfig(FrameSamplingConfig, ClipModelConfig):
    """Settings of ``clip-scene``: the CLIP model and which frames are embedded (default 1 fps)."""

    fps: float | None = 1.0
    """Frames embedded per second of video; None = native rate or ``n_frames`` (SCD: 30 frames)."""


def scd_clip_scene_config(**changes: Any) -> ClipSceneConfig:
    """SCD-MMPSR's scene encoder: CLIP ViT-B/32 on 30 uniformly spaced frames."""
    return ClipSceneConfig.from_dict({"model": SCD_CLIP, "fps": None, "n_frames": 30, **changes})


@dataclass(frozen=True)
class LoadedClip:
    """A CLIP model ready to embed images."""

    model: Any
    processor: Any
    device: Any
    dtype: Any
    preprocess: ClipPreprocessor

    @property
    def dim(self) -> int:
        """Projected embedding width."""
        return int(self.model.config.projection_dim)

    def prepare(self, images: list[npt.NDArray[np.uint8]]) -> Any:
        """RGB uint8 images of any sizes resized and cropped as the processor does: uint8 planes
        normalised in :meth:`forward` on the model's device (float32 pixel values where the processor's
        settings need the processor itself)."""
        import torch

        prepared = torch.from_numpy(self.preprocess(images) if self.preprocess.fallback
                                    else self.preprocess.crops(images))
        return prepared.pin_memory() if self.device.type == "cuda" else prepared

    def forward(self, prepared: Any) -> npt.NDArray[np.float32]:
        """Projected embeddings of prepared images."""
        import torch

        prepared = prepared.to(self.device, non_blocking=True)
        pixels = (prepared if prepared.dtype == torch.float32 else self.preprocess.normalise(prepared))
        pixels = pixels.to(self.dtype)
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels).pooler_output
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)


def load_clip(config: ClipModelConfig) -> LoadedClip:
    """Load the configured CLIP and its image processor (weights on the config's device and dtype)."""
    import torch
    from transformers import AutoImageProcessor, CLIPModel

    kwargs = from_pretrained_kwargs(config.model, config.revision)
    device = torch.device(config.device)
    dtype = resolve_dtype(config.dtype, config.device)
    model = CLIPModel.from_pretrained(config.model, **kwargs).to(device, dtype).eval()
    processor = AutoImageProcessor.from_pretrained(config.model, **kwargs)
    return LoadedClip(model=model, processor=processor, device=device, dtype=dtype,
                      preprocess=ClipPreprocessor(processor))


def _demo_model(workdir: Path) -> str:
    from affectcache.extractors.testing.standins import demo_model
    from affectcache.extractors.testing.visual_standins import tiny_clip

    # One variable for both CLIP modalities: AFFECTCACHE_DEMO_CLIP_MODEL.
    return demo_model("clip", lambda: tiny_clip(workdir / "tiny-clip"))[0]


CC = TypeVar("CC", bound=ClipModelConfig)


class _ClipModel(Generic[CC]):
    """The CLIP model side shared by ``clip-face`` and ``clip-scene`` (they differ only in their images)."""

    config: CC
    model: Any
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "torch")

    def model_info(self) -> dict[str, Any]:
        return model_identity(self.config.model, self.config.revision)

    def _load(self) -> LoadedClip:
        return load_clip(self.config)

    @property
    def output_dim(self) -> int:
        return self.model.dim  # type: ignore[no-any-return]


@register_extractor
class ClipFaceExtractor(_ClipModel[ClipFaceConfig], FaceCropEmbedder[ClipFaceConfig]):
    """CLIP embedding of the face crop of every ``face`` row."""

    name = "clip-face"
    version = "1"
    config_type = ClipFaceConfig
    summary = "CLIP projected embeddings of face crops from stored `face` boxes (ViT-B/16; B/32 preset)"

    @classmethod
    def demo_config(cls, workdir: Path) -> ClipFaceConfig:
        return ClipFaceConfig(model=_demo_model(workdir), max_side=320)


@register_extractor
class ClipSceneExtractor(_ClipModel[ClipSceneConfig], FrameEmbedder[ClipSceneConfig]):
    """CLIP embedding of every sampled whole frame."""

    name = "clip-scene"
    version = "1"
    config_type = ClipSceneConfig
    summary = "CLIP projected embeddings of whole sampled frames (SCD 'behaviour by scene')"

    @classmethod
    def demo_config(cls, workdir: Path) -> ClipSceneConfig:
        return ClipSceneConfig(model=_demo_model(workdir), fps=1.0, max_side=320)
