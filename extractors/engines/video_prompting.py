"""What the Qwen-VL extractors share: the config of a video prompt, the prompts, and segment frames.

``behaviour-caption`` and ``behaviour-hidden`` both cut an item into segments (the whole clip, or windows
of ``window_s`` every ``hop_s``), sample each segment's frames at ``fps`` (at most ``max_frames``, spread
uniformly when there are more), resized inside the decoder to the model's pixel geometry (sides multiples
of 28 for Qwen2.5-VL / 32 for Qwen3-VL, area within ``[min_pixels, max_pixels]``), and build one chat
prompt per segment. Frames are decoded once per item, streaming: a frame is kept only while a segment
that contains it is still open, so full-resolution frames never reach the model process and memory
stays bounded by the open segments.

Segment times (``start_s``/``end_s`` of the rows) are relative to the item start, like every row time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.engines.vlm import VLMSettings, chat_prompt
from affectcache.extractors.media.decode_memo import FrameSampling, MediaNeeds
from affectcache.extractors.media.probe import probe
from affectcache.extractors.media.video import iter_frames

if TYPE_CHECKING:
    from collections.abc import Iterator

    from affectcache.extractors.core.records import MediaItem
    from affectcache.extractors.engines.vlm import VisionGeometry

SCD_FULL_PROMPT: Final = (
    "You are an expert in visual human behavior analysis. Carefully examine the provided video clip, which "
    "features a person facing the camera. Your task is to describe, in continuous natural language, the "
    "person's visible emotional state, personality tendencies, or possible signs of ambivalence and "
    "hesitancy as reflected through their nonverbal behavior.\n\n"
    "Focus exclusively on observable cues such as facial muscle movements (eyes, eyebrows, mouth, gaze), "
    "body posture, gestures, and head motions. Infer emotional tendencies (neutral, anger, disgust, fear, "
    "happiness, sadness, surprise), personality traits (Openness, Conscientiousness, Extraversion, "
    "Agreeableness, Neuroticism), or subtle conflicting signals of uncertainty and hesitation when visible."
    "\n\nIn your description:\n\n"
    "- Comment on the person's appearance, posture, gestures, and expressiveness as indicators of emotional "
    "state, personality, or ambivalence.\n"
    "- Observe and explain facial expressions and body movements as cues, highlighting consistency or "
    "discordance across behaviors.\n"
    "- Avoid assumptions about personal background, spoken content, or context beyond what is visually "
    "observable.\n"
    "- If the state appears mixed or ambiguous, briefly mention this with a short explanation based on "
    "visible cues.\n\n"
    "Your final response must be a fluent, continuous natural language interpretation of the person's "
    "visible behavior in the video, written as a single coherent paragraph without any line breaks, bullet "
    "points, special characters, or formatting. The response must express a complete, finished thought "
    "and must not exceed 75 tokens in total.")
"""SCD-MMPSR's full behaviour prompt (seed 002, Appendix A.2), verbatim."""

SCD_SHORT_PROMPT: Final = (
    "You are an expert in visual human behavior analysis. Analyze the provided video of a person facing "
    "the camera and describe, in continuous natural language, their visible emotional state, personality "
    "tendencies, or signs of ambivalence based only on facial expressions, posture, gestures, and head "
    "movements. Avoid assumptions beyond what is visually observable. Write one coherent paragraph not "
    "exceeding 75 tokens.")
"""SCD-MMPSR's short behaviour prompt (seed 002, Appendix A.2), verbatim."""

RAS_VA_PROMPT: Final = (
    "You are an expert in multimodal affect analysis. Watch this short video clip of a person. Describe "
    "how positive or negative (valence) and how calm or excited (arousal) the person appears, the visible "
    "cues behind that impression (facial expression, gaze, head and body movement, gestures), and how "
    "they change during the clip. Do not guess anything that is not visible. Answer in one paragraph of "
    "at most 100 tokens and end with a period.")
"""A valence/arousal prompt written for affectcache in the spirit of Team RAS's (theirs is not published
verbatim): what valence and arousal look like, on which cues, and how they evolve."""


@dataclass(frozen=True, kw_only=True)
class VideoPromptConfig(ExtractorConfig):
    """Model, prompt, segmentation and frame sampling of a Qwen-VL video prompt (shared settings)."""

    batch_size: int = runtime_only(8)
    """Segments (of one or several videos) handed to the engine at once; large on vLLM hosts."""

    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    """Hub id or local folder of a Qwen2.5-VL / Qwen3-VL instruct checkpoint."""

    revision: str | None = None
    """Hub revision to pin (ignored for local folders)."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = runtime_only("auto")
    """Compute dtype (``auto``: float32 on CPU, bfloat16 on CUDA)."""

    prompt: str = SCD_FULL_PROMPT
    """Instruction given with each segment's video."""

    system_prompt: str | None = None
    """System message before the user turn; None = none."""

    window_s: float | None = None
    """Segment length in seconds; None = one segment spanning the whole item."""

    hop_s: float | None = None
    """Step between segment starts in seconds (needs ``window_s``); None = ``window_s`` (no overlap)."""

    min_window_s: float = 0.5
    """A trailing segment shorter than this is dropped (unless it is the item's only one)."""

    fps: float = 2.0
    """Frames sampled per second of video (one per ``1/fps`` tick)."""

    max_frames: int = 768
    """Most frames per segment; more are thinned uniformly (keeping the first and last)."""

    min_pixels: int = 128 * 28 * 28
    """Smallest frame area handed to the model, in pixels (frames are upscaled to it)."""

    max_pixels: int = 768 * 28 * 28
    """Largest frame area handed to the model, in pixels; together with ``fps`` it sets the visual tokens
    per second (Qwen2.5-VL: fps/2 × (H/28)(W/28)) and so the cost."""

    max_model_len: int | None = None
    """Context limit in tokens (prompt with visual tokens + answer); None = the model's own. Segments
    over it fail instead of running."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.model:
            problems.append("model must name a hub id or a local folder")
        if self.window_s is not None and self.window_s <= 0:
            problems.append(f"window_s must be positive or null, got {self.window_s}")
        if self.hop_s is not None and (self.window_s is None or self.hop_s <= 0):
            problems.append("hop_s needs window_s and must be positive")
        if self.min_window_s < 0:
            problems.append(f"min_window_s must be >= 0, got {self.min_window_s}")
        if self.fps <= 0:
            problems.append(f"fps must be positive, got {self.fps}")
        if self.max_frames < 1:
            problems.append(f"max_frames must be >= 1, got {self.max_frames}")
        if not 0 < self.min_pixels <= self.max_pixels:
            problems.append(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        if self.max_model_len is not None and self.max_model_len < 16:
            problems.append(f"max_model_len must be >= 16 or null, got {self.max_model_len}")
        if not self.prompt.strip():
            problems.append("prompt must not be empty")
        return problems

    def chat(self) -> str:
        """The chat prompt with the video placeholder."""
        return chat_prompt(self.prompt, system=self.system_prompt)

    def vlm_settings(self, **extra: object) -> VLMSettings:
        """Engine settings from this config."""
        return VLMSettings(model=self.model, revision=self.revision, device=self.device, dtype=self.dtype,
                           max_model_len=self.max_model_len, **extra)  # type: ignore[arg-type]

    def media_needs(self) -> MediaNeeds:
        """The frames :func:`item_segments` decodes."""
        return MediaNeeds(frame_samplings=frozenset({FrameSampling(fps=self.fps)}))


@dataclass(frozen=True)
class Segment:
    """One segment of an item: bounds relative to the item start, and its sampled frames."""

    index: int
    start_s: float
    end_s: float
    frames: npt.NDArray[np.uint8]
    """``(T, H, W, 3)``; ``T`` may be 0 when no frame falls inside."""


def plan_segments(duration_s: float, *, window_s: float | None, hop_s: float | None,
                  min_window_s: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every segment of an item lasting ``duration_s`` (relative times)."""
    if window_s is None or window_s >= duration_s:
        return [(0.0, duration_s)]
    hop = hop_s or window_s
    spans: list[tuple[float, float]] = []
    for k in range(math.ceil(duration_s / hop)):
        start = k * hop
        end = min(start + window_s, duration_s)
        if spans and end - start < min_window_s:
            break
        spans.append((round(start, 6), round(end, 6)))
        if end >= duration_s:
            break
    return spans


def _thin(frames: list[npt.NDArray[np.uint8]], k: int) -> list[npt.NDArray[np.uint8]]:
    if len(frames) <= k:
        return frames
    picks = np.linspace(0, len(frames) - 1, k).round().astype(int)
    return [frames[i] for i in picks]


def item_segments(item: MediaItem, cfg: VideoPromptConfig, geometry: VisionGeometry
                  ) -> tuple[list[Segment], tuple[int, int]]:
    """Decode the item's frames once and cut them into segments.

    Returns:
        The segments (in time order) and the ``(height, width)`` frames were resized to.

    Raises:
        BadMediaError: The media cannot be decoded or has no video.
    """
    info = probe(item.path)
    if not info.has_video or not info.width or not info.height:
        raise BadMediaError(f"{item.path}: has no video stream; behaviour modalities need video")
    offset = item.start_s or 0.0
    end = info.duration_s if item.end_s is None else min(item.end_s, info.duration_s)
    duration = max(end - offset, 0.0)
    spans = plan_segments(duration, window_s=cfg.window_s, hop_s=cfg.hop_s, min_window_s=cfg.min_window_s)
    height, width = geometry.frame_size(info.height, info.width, min_pixels=cfg.min_pixels,
                                        max_pixels=cfg.max_pixels)
    return list(_stream_segments(item, cfg, spans, (height, width), offset)), (height, width)


def _stream_segments(item: MediaItem, cfg: VideoPromptConfig, spans: list[tuple[float, float]],
                     size: tuple[int, int], offset: float) -> Iterator[Segment]:
    height, width = size
    open_frames: dict[int, list[npt.NDArray[np.uint8]]] = {}
    nxt = 0  # first span not yet closed
    for frame in iter_frames(item.path, fps=cfg.fps, size=(width, height), start_s=item.start_s,
                             end_s=item.end_s):
        t = frame.time_s - offset
        while nxt < len(spans) and t >= spans[nxt][1] and nxt != len(spans) - 1:
            yield _segment(nxt, spans[nxt], open_frames.pop(nxt, []), cfg, size)
            nxt += 1
        for i in range(nxt, len(spans)):
            start, stop = spans[i]
            if start > t:
                break
            # The last span also takes frames at its very end (the item end is exclusive anyway).
            if t < stop or i == len(spans) - 1:
                open_frames.setdefault(i, []).append(np.array(frame.rgb, copy=True))
    for i in range(nxt, len(spans)):
        yield _segment(i, spans[i], open_frames.pop(i, []), cfg, size)


def _segment(index: int, span: tuple[float, float], frames: list[npt.NDArray[np.uint8]],
             cfg: VideoPromptConfig, size: tuple[int, int]) -> Segment:
    kept = _thin(frames, cfg.max_frames)
    array = np.stack(kept) if kept else np.zeros((0, size[0], size[1], 3), np.uint8)
    return Segment(index=index, start_s=span[0], end_s=span[1], frames=array)
