"""A small store with synthetic ``blendshapes``/``mfcc``/label entries for LaScA chain and trainer tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors import FeatureArray, MediaItem
from affectcache.extractors.audio.mfcc import MFCCConfig, MFCCExtractor
from affectcache.extractors.visual.blendshapes import BlendshapesConfig, BlendshapesExtractor
from affectcache.store.manifest import Manifest
from affectcache.store.zarr_store import FeatureStore
from tests.extractors.lasca.upstream import fake_blendshapes, fake_mfcc

if TYPE_CHECKING:
    from pathlib import Path


def write_upstream(fs: FeatureStore, item: MediaItem, duration_s: float, *, seed: int,
                   level: float = 0.0) -> None:
    """Write synthetic blendshapes and mfcc entries for ``item`` (modalities created if needed)."""
    for name, ext in (("blendshapes", BlendshapesExtractor(BlendshapesConfig())),
                      ("mfcc", MFCCExtractor(MFCCConfig()))):
        if not fs.has_modality(name):
            fs.init_modality(name, ext.provenance())
    fs.write("blendshapes", fake_blendshapes(item.video_id, duration_s, seed=seed, level=level),
             source=item.source_info())
    fs.write("mfcc", fake_mfcc(item.video_id, duration_s, seed=seed, level=level * 20),
             source=item.source_info())


def write_label(fs: FeatureStore, item: MediaItem, track: str, values: np.ndarray, fps: float = 25.0) -> None:
    """A frame-level label track entry."""
    name = fs.init_label_track(track, source="test")
    frame = np.arange(len(values))
    fs.write(name, FeatureArray(video_id=item.video_id, kind="frame", values=values.astype(np.float32),
                                frame=frame, time_s=frame / fps, mask=np.ones(len(values), bool)),
             source=item.source_info())


def small_store(root: Path, *, splits: dict[str, str], duration_s: float = 16.0,
                test_level: float = 0.0) -> tuple[FeatureStore, Manifest]:
    """Items ``id -> split``; test-split items get ``test_level`` added to their features."""
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (vid, split) in enumerate(splits.items()):
        path = root / f"{vid}.bin"
        path.write_bytes(b"x" * (100 + i))
        items.append(MediaItem(video_id=vid, path=str(path), split=split, subject=f"s{i // 2}"))
    fs = FeatureStore(root / "features.zarr")
    for i, item in enumerate(items):
        write_upstream(fs, item, duration_s, seed=i, level=test_level if item.split == "test" else 0.0)
    return fs, Manifest(items=tuple(items))
