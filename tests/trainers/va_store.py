"""A small store with a planted valence/arousal signal for the VA trainer tests (no media, no extractors).

Eight 16 s videos at 25 fps (5 train, 2 val, 1 test); ``labels/valence`` and ``labels/arousal`` are slow
sinusoids (a few frames are −5 / masked). Inputs written directly with a provenance record:

* ``face-emb``: frame rows at 10 fps, 12 values = a fixed linear map of (v, a) + noise, 10 % rows masked;
* ``beh-emb``: segment rows, 4 s every 2 s, 20 values from the segment's mean (v, a);
* ``audio-frames``: frame rows every 20 ms, 6 values (float16) mostly driven by arousal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.store.manifest import write_manifest
from affectcache.store.zarr_store import FeatureStore

if TYPE_CHECKING:
    from pathlib import Path

FPS = 25.0
DURATION_S = 16.0
SPLITS = ["train"] * 5 + ["val"] * 2 + ["test"]


def provenance(name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"extractor": name, "version": "1", "modality_kind": kind, "config": config,
            "config_fingerprint": stable_hash(config), "upstream": {},
            "model": {"id": None, "revision": None, "sha256": None}, "libraries": library_versions(),
            "created": utc_now()}


def labels_of(i: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = 0.7 * np.sin(2 * np.pi * t / (6.0 + i) + i)
    a = 0.6 * np.cos(2 * np.pi * t / (9.0 - 0.5 * i) + 0.3 * i)
    return v, a


def write_inputs(fs: FeatureStore, video_ids: list[str], *, seed: int = 0, face_config: str = "a") -> None:
    """(Re)write the three input modalities; another ``face_config`` gives face-emb another fingerprint."""
    rng = np.random.default_rng(seed)
    w_face = rng.normal(size=(2, 12))
    w_beh = rng.normal(size=(2, 20))
    w_audio = np.array([[0.2, 0.1, 0.0, 0.1, 0.0, 0.1], [1.0, -0.8, 0.6, 0.9, -0.5, 0.7]])
    fs.init_modality("face-emb", provenance("toy-face", "frame", {"dim": 12, "v": face_config}),
                     overwrite=True)
    fs.init_modality("beh-emb", provenance("toy-beh", "segment", {"dim": 20}), overwrite=True)
    fs.init_modality("audio-frames", provenance("toy-audio", "frame", {"dim": 6}), overwrite=True)
    for i, vid in enumerate(video_ids):
        t = np.arange(0, DURATION_S, 0.1)
        v, a = labels_of(i, t)
        values = np.stack([v, a], 1) @ w_face + 0.1 * rng.normal(size=(t.size, 12))
        fs.write("face-emb", FeatureArray(video_id=vid, kind="frame", values=values.astype(np.float32),
                                          frame=np.arange(t.size), time_s=t, mask=rng.random(t.size) > 0.1))
        starts = np.arange(0.0, DURATION_S - 2.0, 2.0)
        ends = np.minimum(starts + 4.0, DURATION_S)
        seg = []
        for s, e in zip(starts, ends, strict=True):
            tt = np.arange(s, e, 1 / FPS)
            sv, sa = labels_of(i, tt)
            seg.append(np.array([sv.mean(), sa.mean()]) @ w_beh)
        fs.write("beh-emb", FeatureArray(video_id=vid, kind="segment", values=np.asarray(seg, np.float32),
                                         start_s=starts, end_s=ends))
        ta = np.arange(0, DURATION_S, 0.02)
        av, aa = labels_of(i, ta)
        audio = np.stack([av, aa], 1) @ w_audio + 0.05 * rng.normal(size=(ta.size, 6))
        fs.write("audio-frames", FeatureArray(video_id=vid, kind="frame", values=audio.astype(np.float16),
                                              frame=np.arange(ta.size), time_s=ta))


def build_va_store(root: Path) -> tuple[Path, Path]:
    """Write the store and its manifest under ``root``; returns (store path, manifest path)."""
    store_path, manifest_path = root / "va.zarr", root / "va.jsonl"
    fs = FeatureStore(store_path)
    video_ids = [f"vid{i:02d}" for i in range(len(SPLITS))]
    items = []
    n = int(DURATION_S * FPS)
    for track in ("valence", "arousal"):
        fs.init_label_track(track, source="test", description="planted")
    for i, vid in enumerate(video_ids):
        frame = np.arange(n)
        v, a = labels_of(i, frame / FPS)
        mask = np.ones(n, bool)
        mask[40:45] = False  # unannotated frames (stored masked, value -5 like the corpus import)
        for track, vals in (("valence", v), ("arousal", a)):
            fs.write(f"labels/{track}", FeatureArray(
                video_id=vid, kind="frame", values=np.where(mask, vals, -5.0).astype(np.float32), frame=frame,
                time_s=frame / FPS, mask=mask))
        items.append(MediaItem(video_id=vid, path=str(root / f"{vid}.mp4"), split=SPLITS[i],
                               labels={"fps": FPS, "n_label_rows": n}))
    write_inputs(fs, video_ids)
    write_manifest(items, manifest_path)
    return store_path, manifest_path
