"""Test-only extractors and item builders (importable by subprocesses and Dask workers)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectcache.extractors import (
    NO_UPSTREAM,
    BadMediaError,
    Extractor,
    ExtractorConfig,
    FeatureArray,
    MediaItem,
    Upstream,
    register_extractor,
    runtime_only,
)
from affectcache.extractors.media.decode_memo import MediaNeeds


@dataclass(frozen=True, kw_only=True)
class CountingConfig(ExtractorConfig):
    """Config of the model-free test extractor."""

    dim: int = 4
    """Feature width."""
    rows_per_second: float = 10.0
    """Rows per second of (nominal) media."""
    sleep_s: float = runtime_only(0.0)
    """Artificial work per item (for kill/resume tests); cannot change outputs."""


@register_extractor
class CountingExtractor(Extractor[CountingConfig]):
    """Deterministic features from the file's bytes: no model, fails on files named bad*."""

    name = "test-counting"
    version = "1"
    modality_kind = "frame"
    config_type = CountingConfig
    summary = "test-only"

    def _load(self) -> dict[str, int]:
        return {"pid": os.getpid()}

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        _ = self.model
        path = Path(item.path)
        if path.name.startswith("bad") or not path.exists():
            raise BadMediaError(f"{item.path}: unusable test media")
        if path.name.startswith("bug"):
            raise RuntimeError(f"simulated bug on {item.path}")
        if self.config.sleep_s:
            time.sleep(self.config.sleep_s)
        size = path.stat().st_size
        n = max(1, size % 17 + 3)
        rng = np.random.default_rng(size)
        frame = np.arange(n)
        return FeatureArray(video_id=item.video_id, kind="frame",
                            values=rng.standard_normal((n, self.config.dim)).astype(np.float32),
                            frame=frame, time_s=frame / self.config.rows_per_second)


@dataclass(frozen=True, kw_only=True)
class DerivedConfig(ExtractorConfig):
    """Config of the derived test extractor."""

    scale: float = 2.0
    """Factor applied to the upstream values."""


@register_extractor
class DerivedExtractor(Extractor[DerivedConfig]):
    """Scales the rows of ``test-counting``: exercises ``requires`` and fingerprint chaining."""

    name = "test-derived"
    version = "1"
    modality_kind = "frame"
    config_type = DerivedConfig
    requires = ("test-counting",)

    def _load(self) -> None:
        return None

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        up = upstream["test-counting"]
        return FeatureArray(video_id=item.video_id, kind="frame", values=up.values * self.config.scale,
                            frame=up.frame, time_s=up.time_s)


@dataclass(frozen=True, kw_only=True)
class AudioLevelConfig(ExtractorConfig):
    """Config of the audio-level test extractor."""

    sample_rate: int = 16000
    """Decode rate, Hz."""
    hop_s: float = 0.1
    """Row spacing, seconds."""


@register_extractor
class AudioLevelExtractor(Extractor[AudioLevelConfig]):
    """RMS level per hop of the decoded audio: a model-free audio extractor for runner tests."""

    name = "test-audio-level"
    version = "1"
    modality_kind = "frame"
    config_type = AudioLevelConfig

    def _load(self) -> None:
        return None

    def media_needs(self) -> MediaNeeds:
        return MediaNeeds(audio_rates=frozenset({self.config.sample_rate}))

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        from affectcache.extractors.media.audio import decode_audio

        wave = decode_audio(item.path, sample_rate=self.config.sample_rate, start_s=item.start_s,
                            end_s=item.end_s)
        hop = max(1, round(self.config.hop_s * self.config.sample_rate))
        n = max(1, len(wave) // hop)
        if len(wave) < hop:
            rms = np.zeros(1)
        else:
            rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop) ** 2, axis=1))
        frame = np.arange(n)
        return FeatureArray(video_id=item.video_id, kind="frame", values=rms.astype(np.float32)[:, None],
                            frame=frame, time_s=frame * self.config.hop_s)


def make_items(folder: Path, names: list[str]) -> list[MediaItem]:
    """Items for files ``folder/<name>.bin`` (created with distinct sizes if missing)."""
    items = []
    for i, name in enumerate(names):
        path = folder / f"{name}.bin"
        if not path.exists():
            path.write_bytes(b"x" * (100 + 7 * i))
        items.append(MediaItem(video_id=name, path=str(path)))
    return items


def store_snapshot(store: Any, modality: str) -> dict[str, dict[str, np.ndarray]]:
    """All arrays of a modality, for equality checks between runs."""
    return {vid: store.read(modality, vid).row_arrays() for vid in store.videos(modality)}
