"""Which video frames a visual extractor looks at: a rate, K uniform frames, or every frame.

:class:`FrameSamplingConfig` holds the shared fields (``fps``, ``n_frames``, ``max_side``) and
:func:`sample_frames` decodes exactly those frames once, resized inside swscale. The sampling is recorded in
the entry attrs (:func:`sampling_attrs`) so a derived extractor can decode the very same frames again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.media.decode_memo import FrameSampling, MediaNeeds
from affectcache.extractors.media.probe import probe
from affectcache.extractors.media.video import iter_frames

if TYPE_CHECKING:
    from collections.abc import Iterator

    from affectcache.extractors.core.records import MediaItem
    from affectcache.extractors.media.video import VideoFrame


def decode_size(path: str, max_side: int) -> tuple[int, int] | None:
    """``(width, height)`` to decode ``path`` at so the longer side is at most ``max_side`` (None = as is).

    Sizes are even: swscale and most decoders prefer them, and it keeps results stable across builds.
    """
    info = probe(path)
    if not info.width or not info.height or max(info.width, info.height) <= max_side:
        return None
    scale = max_side / max(info.width, info.height)
    return max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2)



@dataclass(frozen=True, kw_only=True)
class FrameSamplingConfig(ExtractorConfig):
    """Frame selection shared by the visual extractors. Set at most one of ``fps`` and ``n_frames``;
    with neither, every frame is used."""

    fps: float | None = 5.0
    """Frames sampled per second of video (the frame nearest each tick); None = native rate or
    ``n_frames``."""

    n_frames: int | None = None
    """Sample this many frames uniformly over the item (``linspace``; SCD: 30) instead of a rate."""

    max_side: int = 640
    """Frames whose longer side exceeds this many pixels are downscaled (aspect kept) while decoding."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.fps is not None and self.n_frames is not None:
            problems.append("set at most one of fps and n_frames")
        if self.fps is not None and not self.fps > 0:
            problems.append(f"fps must be > 0, got {self.fps}")
        if self.n_frames is not None and self.n_frames < 1:
            problems.append(f"n_frames must be >= 1, got {self.n_frames}")
        if self.max_side < 32:
            problems.append(f"max_side must be >= 32 pixels, got {self.max_side}")
        return problems


def sampling_attrs(config: FrameSamplingConfig) -> dict[str, Any]:
    """The sampling settings as stored in entry attrs (read back by :func:`resample_frames`)."""
    return {"fps": config.fps, "n_frames": config.n_frames}


def sampling_needs(config: FrameSamplingConfig) -> MediaNeeds:
    """The frames an extractor with this sampling decodes (for
    :meth:`~affectcache.extractors.core.base.Extractor.media_needs`)."""
    return MediaNeeds(frame_samplings=frozenset({FrameSampling(fps=config.fps, n_frames=config.n_frames)}))


def sample_frames(item: MediaItem, config: FrameSamplingConfig) -> Iterator[VideoFrame]:
    """The item's sampled frames, RGB, longer side at most ``config.max_side``."""
    return resample_frames(item, sampling_attrs(config), config.max_side)


def resample_frames(item: MediaItem, sampling: dict[str, Any], max_side: int) -> Iterator[VideoFrame]:
    """Decode the frames that ``sampling`` (as recorded by :func:`sampling_attrs`) selects, at a size of
    its own: the same frame indices whatever ``max_side`` is, since selection depends only on timestamps."""
    return iter_frames(item.path, fps=sampling.get("fps"), n_frames=sampling.get("n_frames"),
                       size=decode_size(item.path, max_side), start_s=item.start_s, end_s=item.end_s)
