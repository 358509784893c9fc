"""``behaviour-hidden``: RAS-style Qwen-VL embeddings, one float16 row per segment.

One forward pass over prompt + video (no generation); the last hidden layer is pooled over the tokens of the
chosen branch: ``multimodal`` = every token of the prompt+video input, ``visual`` = the video tokens only,
``text`` = the prompt alone, run without the video. Statistics (in ``pooling`` order, concatenated):
``mean``; ``std`` = sqrt(E[x²] − E[x]² + 1e-6) as RAS computes it; ``last`` = the last token. Defaults: the
RAS windowing (4 s every 2 s, 4 fps, ≤16 frames) and Qwen3-VL-4B-Instruct, whose text width is 2560, so
``mean,std,last`` rows hold 7680 values.

Segments without frames (none sampled inside) are zeros with ``mask`` false; a segment too long for the
context fails its item as bad media. Runs on the transformers backend only: vLLM does not return hidden
states of prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from affectcache.extractors.common.pretrained import model_identity
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.engines.video_prompting import RAS_VA_PROMPT, VideoPromptConfig, item_segments
from affectcache.extractors.engines.vlm import (
    ContextOverflowError,
    TransformersVideoLM,
    VideoPrompt,
    chat_prompt,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from affectcache.extractors.media.decode_memo import MediaNeeds

Branch = Literal["multimodal", "visual", "text"]
Stat = Literal["mean", "std", "last"]

_STD_EPS = 1e-6


@dataclass(frozen=True, kw_only=True)
class BehaviourHiddenConfig(VideoPromptConfig):
    """Settings of ``behaviour-hidden``. Defaults: RAS (Qwen3-VL-4B, 4 s / 2 s windows, 4 fps, ≤16 frames)."""

    model: str = "Qwen/Qwen3-VL-4B-Instruct"
    """Hub id or local folder of a Qwen2.5-VL / Qwen3-VL instruct checkpoint."""

    prompt: str = RAS_VA_PROMPT
    """Instruction given with each segment's video."""

    window_s: float | None = 4.0
    """Segment length in seconds; None = one segment spanning the whole item."""

    hop_s: float | None = 2.0
    """Step between segment starts in seconds; None = ``window_s``."""

    fps: float = 4.0
    """Frames sampled per second of video."""

    max_frames: int = 16
    """Most frames per segment (thinned uniformly)."""

    min_pixels: int = 128 * 32 * 32
    """Smallest frame area handed to the model, in pixels."""

    max_pixels: int = 768 * 32 * 32
    """Largest frame area handed to the model, in pixels."""

    branch: Branch = "multimodal"
    """Tokens pooled: all of prompt+video (``multimodal``), the video tokens (``visual``), or the prompt run
    alone (``text``)."""

    pooling: tuple[Stat, ...] = ("mean", "std", "last")
    """Statistics over the branch's tokens, concatenated in this order (RAS downstream uses ``last``)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.pooling or len(set(self.pooling)) != len(self.pooling):
            problems.append(f"pooling must list distinct statistics, got {list(self.pooling)}")
        return problems


def pool_states(states: npt.NDArray[np.float32], stats: Sequence[str]) -> npt.NDArray[np.float32]:
    """Concatenated statistics over the token axis of ``(tokens, dim)`` states (``last`` = final row)."""
    x = states.astype(np.float64)
    out = []
    for stat in stats:
        if stat == "mean":
            out.append(x.mean(axis=0))
        elif stat == "std":
            out.append(np.sqrt(np.maximum((x ** 2).mean(axis=0) - x.mean(axis=0) ** 2, 0.0) + _STD_EPS))
        else:
            out.append(x[-1])
    return np.concatenate(out).astype(np.float32)


@register_extractor
class BehaviourHiddenExtractor(Extractor[BehaviourHiddenConfig]):
    """Pooled last-layer Qwen-VL states of prompt+video per segment (RAS behaviour embeddings)."""

    name = "behaviour-hidden"
    version = "1"
    modality_kind = "segment"
    config_type = BehaviourHiddenConfig
    summary = "Qwen-VL last hidden layer over prompt+video per 4 s window, mean/std/last pooled (RAS), fp16"

    @classmethod
    def demo_config(cls, workdir: Path) -> BehaviourHiddenConfig:
        from affectcache.extractors.testing.language_standins import tiny_qwen3_vl
        from affectcache.extractors.testing.standins import demo_model

        model, stand_in = demo_model(cls.name, lambda: tiny_qwen3_vl(workdir / "tiny-qwen3-vl"))
        if not stand_in:
            return BehaviourHiddenConfig(model=model)
        return BehaviourHiddenConfig(model=model, fps=1.0, max_frames=4, min_pixels=64 * 64,
                                     max_pixels=64 * 96, window_s=8.0, hop_s=8.0)

    def model_info(self) -> dict[str, Any]:
        return model_identity(self.config.model, self.config.revision)

    def media_needs(self) -> MediaNeeds:
        return self.config.media_needs()

    def _load(self) -> TransformersVideoLM:
        return TransformersVideoLM(self.config.vlm_settings())

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        cfg = self.config
        engine: TransformersVideoLM = self.model
        segments, (height, width) = item_segments(item, cfg, engine.geometry)
        text_prompt = chat_prompt(cfg.prompt, system=cfg.system_prompt, with_video=False)
        rows: list[npt.NDArray[np.float32] | None] = []
        for seg in segments:
            if not len(seg.frames):
                rows.append(None)
                continue
            request = VideoPrompt(key=f"{item.video_id}#{seg.index}", prompt=cfg.chat(), frames=seg.frames,
                                  fps=cfg.fps)
            try:
                states, visual = engine.last_hidden_states(
                    request, text_only_prompt=text_prompt if cfg.branch == "text" else None)
            except ContextOverflowError as exc:
                raise BadMediaError(f"{item.path}: {exc}") from exc
            if cfg.branch == "visual":
                states = states[visual]
            rows.append(pool_states(states, cfg.pooling))
        width_out = next((len(r) for r in rows if r is not None), 0)
        if not width_out:
            raise BadMediaError(f"{item.path}: no frames sampled for {item.video_id}")
        values = np.stack([r if r is not None else np.zeros(width_out, np.float32) for r in rows])
        return FeatureArray(
            # Clipped to the float16 range so an outlier state cannot become inf in the store.
            video_id=item.video_id, kind="segment", values=np.clip(values, -65504, 65504).astype(np.float16),
            start_s=np.array([s.start_s for s in segments]), end_s=np.array([s.end_s for s in segments]),
            mask=np.array([r is not None for r in rows], dtype=bool),
            attrs={"branch": cfg.branch, "pooling": list(cfg.pooling), "frame_size": [height, width],
                   "n_frames": [len(s.frames) for s in segments], "fps": cfg.fps,
                   "offset_s": item.start_s or 0.0,
                   "visual_tokens_per_second": engine.geometry.visual_tokens_per_second(cfg.fps, height,
                                                                                        width)})
