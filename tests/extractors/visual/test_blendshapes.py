"""``blendshapes``: the real MediaPipe landmarker on a real face photo, masking, and the engine seam."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.common.assets import FACE_LANDMARKER, AssetMissingError
from affectcache.extractors.testing.synthetic import write_clip
from affectcache.extractors.visual.blendshapes import (
    BLENDSHAPE_NAMES,
    BlendshapesConfig,
    BlendshapesExtractor,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    import numpy.typing as npt


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 10 fps, 640x480: the astronaut photo (a smiling face) for 1 s, then blank frames."""
    from skimage import data

    photo = np.zeros((480, 640, 3), np.uint8)
    photo[:, 64:576] = data.astronaut()[16:496]
    blank = np.full_like(photo, 127)
    return write_clip(tmp_path_factory.mktemp("faces") / "face.mp4", duration_s=2.0, fps=10.0,
                      size=(640, 480), frame_fn=lambda i, t: photo if i < 10 else blank)


def test_real_landmarker_scores_a_smile_and_masks_blank_frames(asset_home: Path, face_clip: Path) -> None:
    ext = BlendshapesExtractor(BlendshapesConfig(fps=10.0, max_side=320))
    feats = ext.extract(MediaItem(video_id="face", path=str(face_clip)))
    assert feats.values.shape == (20, 52)
    assert feats.mask is not None
    assert feats.time_s is not None
    assert feats.mask[:10].all()
    assert not feats.mask[10:].any()
    assert (feats.values[10:] == 0).all()
    smile_columns = [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]
    smile = feats.values[:10, smile_columns]
    assert (smile > 0.6).all()
    frown = feats.values[:10, BLENDSHAPE_NAMES.index("mouthFrownLeft")]
    assert (frown < 0.2).all()
    assert np.allclose(feats.time_s, np.arange(20) / 10.0, atol=1e-6)
    assert feats.attrs["categories"] == list(BLENDSHAPE_NAMES)
    assert feats.attrs["frame_size"] == [320, 240]
    assert ext.model_info()["sha256"] == FACE_LANDMARKER.sha256


def test_clip_items_are_timed_from_the_clip_start(asset_home: Path, face_clip: Path) -> None:
    ext = BlendshapesExtractor(BlendshapesConfig(fps=5.0, max_side=320))
    feats = ext.extract(MediaItem(video_id="face", path=str(face_clip), start_s=0.8, end_s=1.6))
    assert feats.time_s is not None
    assert feats.mask is not None
    assert feats.time_s[0] == pytest.approx(0.0, abs=1e-6)
    assert feats.mask.tolist() == [True, False, False, False]  # face until 1.0 s


class _FakeEngine:
    """Scores = the frame's mean brightness; no face on dark frames. Records timestamps."""

    def __init__(self) -> None:
        self.timestamps: list[int] = []

    def score_video(self, frames: Iterable[tuple[npt.NDArray[np.uint8], int]]
                    ) -> Iterator[npt.NDArray[np.float32] | None]:
        for rgb, ts in frames:
            self.timestamps.append(ts)
            level = float(rgb.mean()) / 255.0
            yield None if level < 0.1 else np.full(len(BLENDSHAPE_NAMES), level, np.float32)


def test_an_injected_engine_gets_increasing_timestamps(media_dir: Path, face_clip: Path) -> None:
    engine = _FakeEngine()
    ext = BlendshapesExtractor(BlendshapesConfig(fps=10.0), engine=engine)
    feats = ext.extract(MediaItem(video_id="face", path=str(face_clip)))
    assert np.all(np.diff(engine.timestamps) > 0)
    assert feats.mask is not None
    assert feats.mask.all()
    assert feats.values[15, 0] == pytest.approx(127 / 255, abs=0.02)


def test_missing_asset_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        face_clip: Path) -> None:
    monkeypatch.setenv("AFFECTCACHE_HOME", str(tmp_path))
    ext = BlendshapesExtractor(BlendshapesConfig())
    with pytest.raises(AssetMissingError, match=r"affectcache assets fetch face_landmarker\.task"):
        ext.extract(MediaItem(video_id="face", path=str(face_clip)))
