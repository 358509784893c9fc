"""Fields every fusion trainer config shares: which prediction modalities feed which model stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from affectcache.trainers.data.config import VAConfig


@dataclass(frozen=True, kw_only=True)
class FusionVAConfig(VAConfig):
    """Streams, their store modalities, the frame-clock fill rule and the frame windows of a fusion model."""

    view: ClassVar[str] = "fusion-windows"

    input_modality: str = ""
    """Unused by fusion trainers: they read ``input_modalities``."""

    input_modalities: tuple[str, ...] = ()
    """Store modality of each stream (same order; empty: ``pred-<stream>``): frame modalities on the label
    clock, as ``affectcache predict`` writes them (behaviour and audio heads already expanded from
    segments/windows to frames)."""

    fill_missing: bool = True
    """A frame without its own row in a stream takes that stream's nearest valid row (RAS's fill, within
    ``max_fill_s``); false: such frames are zeros and masked for that stream."""

    max_fill_s: float | None = None
    """Farthest fill distance in seconds (null: any); beyond it the stream is zeros and masked."""

    window: int = 400
    """Frames per training window (the last one aligned to the video's end)."""

    hop: int = 150
    """Frames between window starts."""

    def streams(self) -> tuple[str, ...]:
        """Stream names the model reads, in order (each model config says which)."""
        return ()

    def token_streams(self) -> dict[str, int]:
        """Streams the model reads as a few tokens per window instead of per frame: name -> tokens (the
        window's frames split in that many equal chunks, each the mean of the chunk's valid rows)."""
        return {}

    def input_names(self) -> tuple[str, ...]:
        """Store modalities the run depends on."""
        return self.input_modalities or tuple(f"pred-{m}" for m in self.streams())

    def validate(self) -> list[str]:
        problems = super().validate()
        if len(self.labels) != 2:
            problems.append(f"fusion models predict valence and arousal: labels must name 2 tracks, got "
                            f"{list(self.labels)}")
        if self.input_modalities and (len(self.input_modalities) != len(self.streams())
                                      or not all(self.input_modalities)):
            problems.append(f"input_modalities must name one store modality per stream "
                            f"{list(self.streams())}, got {list(self.input_modalities)}")
        if self.max_fill_s is not None and self.max_fill_s < 0:
            problems.append(f"max_fill_s must be >= 0 or null, got {self.max_fill_s}")
        if self.window < 1 or not 1 <= self.hop <= self.window:
            problems.append(f"need 1 <= hop <= window, got hop {self.hop}, window {self.window}")
        return problems
