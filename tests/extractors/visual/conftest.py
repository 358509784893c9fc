"""Session fixtures of the visual tests: real MediaPipe assets, face videos, tiny random CLIP and GRADA."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def face_assets() -> Path:
    """The real MediaPipe models, fetched once through the asset mechanism."""
    from tests.asset_cache import ensure_test_assets

    return ensure_test_assets()


@pytest.fixture(scope="session")
def face_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``one``: the astronaut from 1 s on; ``two``: plus a half-size second face."""
    from tests.extractors.visual.media import write_face_video

    root = tmp_path_factory.mktemp("faces")
    return {"one": write_face_video(root / "one.mp4"),
            "two": write_face_video(root / "two.mp4", second_face=True)}


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Tiny random CLIPs with patch 16 and patch 32, by patch size."""
    from affectcache.extractors.testing.visual_standins import tiny_clip

    root = tmp_path_factory.mktemp("clip")
    return {p: tiny_clip(root / f"p{p}", patch_size=p) for p in (16, 32)}


@pytest.fixture(scope="session")
def tiny_grada(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scaled-down random GRADA checkpoint (trunk_width 0.25, trunk_depth 0.1)."""
    from affectcache.extractors.testing.visual_standins import tiny_grada_checkpoint

    return tiny_grada_checkpoint(tmp_path_factory.mktemp("grada") / "grada.safetensors")
