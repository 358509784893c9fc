"""Contract-suite factories of the language extractors (see tests/extractors/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors import ExtractorConfig, FeatureArray, MediaItem
from affectcache.extractors.language.behaviour_caption import ras
from affectcache.extractors.language.behaviour_hidden import BehaviourHiddenConfig
from affectcache.extractors.language.text_embedding import emotion_distilroberta
from affectcache.extractors.language.transcript_whisper import WhisperTranscriptConfig
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from pathlib import Path

Case = tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]

SMALL_VIDEO: dict[str, Any] = {"fps": 2.0, "max_frames": 3, "min_pixels": 56 * 56, "max_pixels": 64 * 96,
                               "window_s": 1.0, "hop_s": 0.5}
"""Windows, rate and frame size small enough for a CPU test (2-6 frames of 56-64 px per segment)."""


def video_items(media: Path) -> list[MediaItem]:
    """Items of different lengths, one a clip of a longer file."""
    return [MediaItem(video_id="a", path=str(media / "a.mp4")),
            MediaItem(video_id="c", path=str(media / "c.mp4")),
            MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.9)]


def behaviour_caption(tmp: Path, media: Path) -> Case:
    return ras(model=tiny_model("qwen2.5-vl"), max_new_tokens=6, batch_size=4, **SMALL_VIDEO), \
        video_items(media), {}


def behaviour_hidden(tmp: Path, media: Path) -> Case:
    return BehaviourHiddenConfig(model=tiny_model("qwen3-vl"), **SMALL_VIDEO), video_items(media), {}


def transcript_whisper(tmp: Path, media: Path) -> Case:
    config = WhisperTranscriptConfig(backend="transformers", model=tiny_model("hf-whisper"), language="en",
                                     max_new_tokens=8, batch_size=2)
    return config, video_items(media), {}


def text_rows(video_id: str, texts: list[str], *, mask: list[bool] | None = None) -> FeatureArray:
    """A stored-text-modality entry with one row per text, 1 s apart."""
    n = len(texts)
    return FeatureArray(video_id=video_id, kind="text", values=np.array(texts, dtype=object),
                        start_s=np.arange(n, dtype=np.float64), end_s=np.arange(n, dtype=np.float64) + 1.0,
                        mask=None if mask is None else np.array(mask, dtype=bool))


def text_embedding(tmp: Path, media: Path) -> Case:
    items = video_items(media)
    upstream = {
        "a": {"transcript": text_rows("a", ["I am so happy today.", "", "This is terrible."],
                                      mask=[True, False, True])},
        "c": {"transcript": text_rows("c", ["Okay."])},
        "b_clip": {"transcript": text_rows("b_clip", ["This is terrible.", "What a surprise!"])},
    }
    config = emotion_distilroberta(model=tiny_model("emotion"), source="transcript", batch_size=2)
    return config, items, upstream
