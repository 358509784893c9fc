"""Tiny contract-suite factories of the visual extractors (registered in tests/extractors/conftest.py)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from affectcache.extractors import ExtractorConfig, MediaItem
from affectcache.extractors.visual.face import Detection, FaceConfig, FaceExtractor
from tests.asset_cache import ensure_test_assets

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt


class FixedFaceEngine:
    """A fake detector: one face at a fixed box, except on every third frame (so some rows are masked)."""

    def __init__(self, box: tuple[float, float, float, float] = (0.3, 0.2, 0.3, 0.4)) -> None:
        self.box = box
        self.calls = 0

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        self.calls += 1
        if self.calls % 3 == 0:
            return []
        return [Detection(*self.box, 0.9)]

    def landmarks(self, rgb: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        return []

    def open(self) -> contextlib.AbstractContextManager[FixedFaceEngine]:
        return contextlib.nullcontext(self)


def _items(media: Path) -> list[MediaItem]:
    items = [MediaItem(video_id=n, path=str(media / f"{n}.mp4")) for n in ("a", "b", "c")]
    items.append(MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.5))
    return items


def fake_face_upstream(items: list[MediaItem], **config: Any) -> dict[str, dict[str, Any]]:
    """``face`` rows from :class:`FixedFaceEngine` (every third sampled frame without a face)."""
    cfg = FaceConfig.from_dict({"fps": 5.0, "max_side": 64, **config})
    return {it.video_id: {"face": FaceExtractor(cfg, engine=FixedFaceEngine()).extract(it)} for it in items}


def face(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """The real detector on the shared synthetic clips (no face in them: every row masked)."""
    ensure_test_assets()
    return FaceConfig(fps=5.0, max_side=64), _items(media), {}


def clip_face(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """Tiny random CLIP on crops of fake face boxes."""
    from affectcache.extractors.testing.visual_standins import tiny_clip
    from affectcache.extractors.visual.clip import ClipFaceConfig

    items = _items(media)
    model = tiny_clip(tmp / "tiny-clip")
    return ClipFaceConfig(model=str(model), batch_size=3, max_side=160), items, fake_face_upstream(items)


def clip_scene(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """Tiny random CLIP on whole frames at 4 fps."""
    from affectcache.extractors.testing.visual_standins import tiny_clip
    from affectcache.extractors.visual.clip import ClipSceneConfig

    model = tiny_clip(tmp / "tiny-clip", patch_size=16)
    return ClipSceneConfig(model=str(model), fps=4.0, batch_size=3, max_side=160), _items(media), {}


def grada_face(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """Scaled-down random GRADA on crops of fake face boxes."""
    from affectcache.extractors.testing.visual_standins import tiny_grada_checkpoint
    from affectcache.extractors.visual.grada_face import GradaConfig

    items = _items(media)
    weights = tiny_grada_checkpoint(tmp / "grada.safetensors")
    config = GradaConfig(weights=str(weights), trunk_width=0.25, trunk_depth=0.1, image_size=64, batch_size=3,
                         max_side=160)
    return config, items, fake_face_upstream(items)
