"""``extract face clip-face grada-face clip-scene``: one video pass per item, same arrays as apart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.visual.clip import ClipFaceConfig, ClipSceneConfig
from affectcache.extractors.visual.face import FaceConfig
from affectcache.extractors.visual.grada_face import GradaConfig
from affectcache.store.runner import build, build_many
from affectcache.store.zarr_store import FeatureStore

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.extractors import ExtractorConfig

MODALITIES = ("face", "clip-face", "grada-face", "clip-scene")


def _configs(tiny_clips: dict[int, Path], tiny_grada: Path) -> dict[str, ExtractorConfig]:
    return {
        "face": FaceConfig(fps=2.0, max_side=128),
        "clip-face": ClipFaceConfig(model=str(tiny_clips[32]), max_side=160),
        "grada-face": GradaConfig(weights=str(tiny_grada), trunk_width=0.25, trunk_depth=0.1, image_size=64,
                                  max_side=128),
        # Another rate and size than face: the same pass selects both samplings.
        "clip-scene": ClipSceneConfig(model=str(tiny_clips[16]), fps=3.0, max_side=96),
    }


@pytest.mark.parametrize("threads", [1, 3])
def test_visual_modalities_built_together_decode_each_item_once(
        face_assets: Path, face_videos: dict[str, Path], media_dir: Path, tiny_clips: dict[int, Path],
        tiny_grada: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    from affectcache.extractors.media import video as media

    items = [MediaItem(video_id=name, path=str(path)) for name, path in face_videos.items()]
    items.append(MediaItem(video_id="a", path=str(media_dir / "a.mp4")))  # no face in it
    configs = _configs(tiny_clips, tiny_grada)
    apart = FeatureStore(tmp_path / "apart.zarr")
    for name in MODALITIES:
        assert build(name, items, apart, config=configs[name], workers=0).ok

    passes: list[str] = []
    real_source = media._video_source

    def counting_source(src: str, *args: Any, **kwargs: Any) -> Any:
        passes.append(src)
        return real_source(src, *args, **kwargs)

    monkeypatch.setattr(media, "_video_source", counting_source)
    together = FeatureStore(tmp_path / "together.zarr")
    reports = build_many(list(MODALITIES), items, together, configs=dict(configs), workers=0,
                         modality_threads=threads)
    assert all(r.ok and len(r.written) == len(items) for r in reports)
    assert sorted(passes) == sorted(it.path for it in items)  # one video pass per item for all four

    for name in MODALITIES:
        for item in items:
            a, b = apart.read(name, item.video_id), together.read(name, item.video_id)
            np.testing.assert_array_equal(a.values, b.values, err_msg=f"{name}/{item.video_id}")
            np.testing.assert_array_equal(a.frame, b.frame)
            if a.mask is not None:
                np.testing.assert_array_equal(a.mask, b.mask)
    assert together.read("clip-face", "one").mask.any()
