"""Tiny test factories for the contract suite: one per registered extractor, or the suite fails.

A factory takes ``(tmp_path, media_dir)`` and returns ``(config, items)``: a config that runs offline in
well under a second per item, and at least two items of different lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from affectcache.extractors import ExtractorConfig, MediaItem
from affectcache.extractors.mfcc import MFCCConfig
from tests.helpers import CountingConfig, DerivedConfig, make_items

Factory = Callable[[Path, Path], tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]]


def _media_items(media_dir: Path, *names: str) -> list[MediaItem]:
    return [MediaItem(video_id=n, path=str(media_dir / f"{n}.mp4")) for n in names]


def _mfcc(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    items = [*_media_items(media, "a", "b", "c"),
             MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.5)]
    return MFCCConfig(batch_size=64), items, {}


def _counting(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    return CountingConfig(), make_items(tmp, ["x1", "x2", "x3"]), {}


def _derived(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    from affectcache.extractors import FeatureArray

    items = make_items(tmp, ["d1", "d2"])
    upstream = {
        it.video_id: {"test-counting": FeatureArray(
            video_id=it.video_id, kind="frame", values=[[1.0, 2.0]] * (3 + i), frame=list(range(3 + i)),
            time_s=[0.1 * k for k in range(3 + i)])}
        for i, it in enumerate(items)}
    return DerivedConfig(), items, upstream


TEST_FACTORIES: dict[str, Factory] = {
    "mfcc": _mfcc,
    "test-counting": _counting,
    "test-derived": _derived,
}
