"""``behaviour-caption``: Qwen-VL descriptions of a person's visible behaviour, one text row per segment.

Presets (functions deriving configs): :func:`scd` (SCD-MMPSR: Qwen2.5-VL-3B-Instruct on the whole clip, the
seed's full prompt, ``short_prompt=True`` for the short one) and :func:`ras` (Team RAS:
Qwen3-VL-4B-Instruct on 4 s windows every 2 s at 4 fps, at most 16 frames, greedy, at most 100 new
tokens, a valence/arousal prompt).

Rows: ``values`` are the captions, whitespace-normalised (runs of spaces and line breaks become one space);
``start_s``/``end_s`` the segment bounds relative to the item start. Per-row flags live in the entry attrs as
lists parallel to the rows: ``status`` (``ok``, ``truncated`` = cut at ``max_new_tokens``, ``empty``,
``no_frames``, ``error``), ``n_frames``, ``n_prompt_tokens``, ``n_new_tokens``, plus
``errors`` (row -> message).
``mask`` is false for rows without a usable caption (``empty``, ``no_frames``, ``error``); truncated captions
are kept (masked true) but flagged. An item none of whose segments gave a usable caption (a whole clip too
long for the context, an empty answer) fails as bad media; the other items of the batch go on. Entry attrs
also record the frame size, fps and the visual tokens per second of video (what sets the cost).

Backends: ``transformers`` (CPU/GPU, the tests' path) and ``vllm`` (GPU hosts; every segment of the
``batch_size`` segments gathered across the batch's videos goes to the engine in one call).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from affectcache.extractors.common.pretrained import model_identity
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import runtime_only
from affectcache.extractors.core.errors import BadMediaError, ConfigError
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.engines.video_prompting import (
    RAS_VA_PROMPT,
    SCD_FULL_PROMPT,
    SCD_SHORT_PROMPT,
    Segment,
    VideoPromptConfig,
    item_segments,
)
from affectcache.extractors.engines.vlm import (
    VLM_BACKENDS,
    Generation,
    VideoPrompt,
    VideoTextGenerator,
    make_video_lm,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from affectcache.extractors.media.decode_memo import MediaNeeds

logger = logging.getLogger(__name__)

USABLE: Final = frozenset({"ok", "truncated"})
"""Statuses whose caption is kept (mask true)."""
_SPACES = re.compile(r"\s+")


def normalise_caption(text: str) -> str:
    """Collapse every run of whitespace (line breaks included) to one space and strip the ends."""
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True, kw_only=True)
class BehaviourCaptionConfig(VideoPromptConfig):
    """Settings of ``behaviour-caption``. Defaults: the :func:`scd` preset."""

    backend: str = runtime_only("transformers")
    """Engine: ``transformers`` (CPU/GPU) or ``vllm`` (GPU hosts, ``vlm`` extra); any key of
    ``affectcache.extractors.engines.vlm.VLM_BACKENDS``. Both decode greedily."""

    max_new_tokens: int = 1000
    """Most tokens generated per segment; an answer cut there is flagged ``truncated``."""

    load_format: str = "auto"
    """vLLM weight loading: ``auto`` (the checkpoint's weights) or ``dummy`` (random weights of the right
    shapes, for throughput runs without weights; the captions are then garbage)."""

    max_num_seqs: int | None = runtime_only(None)
    """vLLM: most sequences decoded concurrently; None = vLLM's default."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.backend not in VLM_BACKENDS:
            problems.append(f"backend must be one of {sorted(VLM_BACKENDS)}, got {self.backend!r}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.load_format not in ("auto", "dummy"):
            problems.append(f"load_format must be 'auto' or 'dummy', got {self.load_format!r}")
        return problems


def scd(*, short_prompt: bool = False, **overrides: Any) -> BehaviourCaptionConfig:
    """Preset ``scd``: Qwen2.5-VL-3B-Instruct on the whole clip with the seed's full (or short) prompt and
    the qwen-vl-utils default sampling (2 fps, 128-768 × 28² px per frame)."""
    base: dict[str, Any] = {"model": "Qwen/Qwen2.5-VL-3B-Instruct",
                            "prompt": SCD_SHORT_PROMPT if short_prompt else SCD_FULL_PROMPT,
                            "window_s": None, "hop_s": None, "fps": 2.0, "max_frames": 768,
                            "min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28, "max_new_tokens": 1000}
    return BehaviourCaptionConfig.from_dict({**base, **overrides})


def ras(**overrides: Any) -> BehaviourCaptionConfig:
    """Preset ``ras``: Qwen3-VL-4B-Instruct on 4 s windows every 2 s, 4 fps, at most 16 frames, greedy, at
    most 100 new tokens, the valence/arousal prompt."""
    base: dict[str, Any] = {"model": "Qwen/Qwen3-VL-4B-Instruct", "prompt": RAS_VA_PROMPT, "window_s": 4.0,
                            "hop_s": 2.0, "min_window_s": 0.5, "fps": 4.0, "max_frames": 16,
                            "min_pixels": 128 * 32 * 32, "max_pixels": 768 * 32 * 32, "max_new_tokens": 100}
    return BehaviourCaptionConfig.from_dict({**base, **overrides})


CAPTION_PRESETS = {"scd": scd, "ras": ras}
"""Preset name -> config function."""


@dataclass
class _Pending:
    """One item's segments waiting for (or holding) their generations."""

    item: MediaItem
    segments: list[Segment]
    size: tuple[int, int]
    generations: dict[int, Generation]


@register_extractor
class BehaviourCaptionExtractor(Extractor[BehaviourCaptionConfig]):
    """Qwen-VL behaviour captions per segment (text rows), transformers or vLLM."""

    name = "behaviour-caption"
    version = "1"
    modality_kind = "text"
    config_type = BehaviourCaptionConfig
    libraries = ("vllm",)
    summary = "Qwen-VL behaviour descriptions per clip/window (SCD prompt, RAS preset), vLLM or transformers"

    def __init__(self, config: BehaviourCaptionConfig | None = None) -> None:
        super().__init__(config)
        self._done: dict[tuple[Any, ...], FeatureArray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_done"] = {}
        return state

    @classmethod
    def demo_config(cls, workdir: Path) -> BehaviourCaptionConfig:
        from affectcache.extractors.testing.language_standins import tiny_qwen2_5_vl
        from affectcache.extractors.testing.standins import demo_model

        model, stand_in = demo_model(cls.name, lambda: tiny_qwen2_5_vl(workdir / "tiny-qwen2.5-vl"))
        if not stand_in:
            return ras(model=model)
        # Few, small frames and short answers: the demo runs on 2 CPU cores.
        return ras(model=model, fps=1.0, max_frames=4, min_pixels=56 * 56, max_pixels=56 * 84,
                   max_new_tokens=8, window_s=8.0, hop_s=8.0)

    def model_info(self) -> dict[str, Any]:
        return model_identity(self.config.model, self.config.revision)

    def media_needs(self) -> MediaNeeds:
        return self.config.media_needs()

    def _load(self) -> VideoTextGenerator:
        cfg = self.config
        return make_video_lm(cfg.backend, cfg.vlm_settings(load_format=cfg.load_format,
                                                           max_num_seqs=cfg.max_num_seqs))

    @staticmethod
    def _key(item: MediaItem) -> tuple[Any, ...]:
        return (item.video_id, item.path, item.start_s, item.end_s)

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        done = self._done.get(self._key(item))
        if done is not None:  # computed by the batch call the runner is now retrying item by item
            return done
        kept = self._done
        try:
            return self.extract_batch([item], [upstream])[0]
        finally:  # the other items of that batch may still be asked for
            self._done = kept

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        engine: VideoTextGenerator = self.model
        cfg = self.config
        self._done = {}
        pending: list[_Pending] = []
        queue: list[tuple[_Pending, Segment]] = []
        failures: dict[str, str] = {}
        for item in items:
            try:
                segments, size = item_segments(item, cfg, engine.geometry)
            except BadMediaError as exc:
                failures[item.video_id] = str(exc)
                continue
            entry = _Pending(item=item, segments=segments, size=size, generations={})
            pending.append(entry)
            queue.extend((entry, s) for s in segments if len(s.frames))
            # Segments of several videos go to the engine together (vLLM batches them continuously).
            while len(queue) >= cfg.batch_size:
                self._run(engine, queue[: cfg.batch_size])
                queue = queue[cfg.batch_size:]
        self._run(engine, queue)
        results: dict[str, FeatureArray] = {}
        for entry in pending:
            try:
                results[entry.item.video_id] = self._features(entry, engine)
            except BadMediaError as exc:
                failures[entry.item.video_id] = str(exc)
        self._done = {self._key(it): results[it.video_id] for it in items if it.video_id in results}
        if failures:
            raise BadMediaError("; ".join(failures.values()))
        return [results[it.video_id] for it in items]

    def _run(self, engine: VideoTextGenerator, batch: list[tuple[_Pending, Segment]]) -> None:
        if not batch:
            return
        requests = [VideoPrompt(key=f"{entry.item.video_id}#{seg.index}", prompt=self.config.chat(),
                                frames=seg.frames, fps=self.config.fps) for entry, seg in batch]
        answers = engine.generate(requests, max_new_tokens=self.config.max_new_tokens)
        if len(answers) != len(requests):
            raise ConfigError(f"{self.config.backend}: engine returned {len(answers)} answers for "
                              f"{len(requests)} requests")
        for (entry, seg), answer in zip(batch, answers, strict=True):
            entry.generations[seg.index] = answer

    def _features(self, entry: _Pending, engine: VideoTextGenerator) -> FeatureArray:
        cfg, item = self.config, entry.item
        texts, statuses, errors = [], [], {}
        n_prompt, n_new = [], []
        for seg in entry.segments:
            gen = entry.generations.get(seg.index)
            if gen is None:
                texts.append("")
                statuses.append("no_frames")
                n_prompt.append(0)
                n_new.append(0)
                continue
            text = normalise_caption(gen.text)
            if gen.finish_reason == "error":
                status = "error"
                errors[str(seg.index)] = gen.error or "engine error"
            elif not text:
                status = "empty"
            else:
                status = "truncated" if gen.finish_reason == "length" else "ok"
            texts.append(text)
            statuses.append(status)
            n_prompt.append(gen.n_prompt_tokens)
            n_new.append(gen.n_new_tokens)
        mask = np.array([s in USABLE for s in statuses], dtype=bool)
        if not mask.any():
            reasons = sorted(set(errors.values())) or [f"segment statuses {sorted(set(statuses))}"]
            raise BadMediaError(f"{item.path}: no usable behaviour caption for {item.video_id}: "
                                f"{'; '.join(reasons)}")
        height, width = entry.size
        geometry = engine.geometry
        return FeatureArray(
            video_id=item.video_id, kind="text", values=np.array(texts, dtype=object),
            start_s=np.array([s.start_s for s in entry.segments]),
            end_s=np.array([s.end_s for s in entry.segments]), mask=mask,
            attrs={"status": statuses, "n_frames": [len(s.frames) for s in entry.segments],
                   "n_prompt_tokens": n_prompt, "n_new_tokens": n_new, "errors": errors,
                   "frame_size": [height, width], "fps": cfg.fps, "offset_s": item.start_s or 0.0,
                   "visual_tokens_per_second": geometry.visual_tokens_per_second(cfg.fps, height, width),
                   "engine": engine.describe()})
