"""``clip-face`` / ``clip-scene``: tiny random CLIPs (patch 16 and 32), crops, batching, staleness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from affectcache.extractors import MediaItem
from affectcache.extractors.common.face_crops import average_crops, crop_box, face_row_frames, row_crops
from affectcache.extractors.visual.clip import (
    ClipFaceConfig,
    ClipFaceExtractor,
    ClipSceneConfig,
    ClipSceneExtractor,
    scd_clip_scene_config,
)
from affectcache.extractors.visual.face import FaceConfig, FaceLayout
from tests.extractors.visual.factories import fake_face_upstream

if TYPE_CHECKING:
    from pathlib import Path


def _items(media_dir: Path) -> list[MediaItem]:
    return [MediaItem(video_id=n, path=str(media_dir / f"{n}.mp4")) for n in ("a", "b", "c")]


def test_crop_geometry_margin_square_and_black_padding() -> None:
    rgb = np.full((100, 200, 3), 200, dtype=np.uint8)
    crop = crop_box(rgb, (0.5, 0.5, 0.1, 0.2), margin=0.0, square=False)
    assert crop.shape == (20, 20, 3)
    assert (crop == 200).all()
    sq = crop_box(rgb, (0.5, 0.5, 0.1, 0.3), margin=0.5, square=True)
    assert sq.shape == (60, 60, 3)
    edge = crop_box(rgb, (0.0, 0.0, 0.1, 0.2), margin=0.5, square=True)
    assert edge.shape == (40, 40, 3)
    assert (edge[:10] == 0).all()
    assert (edge[-5:, -5:] == 200).all()
    avg = average_crops([np.full((10, 10, 3), 100, np.uint8), np.full((4, 4, 3), 200, np.uint8)])
    assert avg.shape == (10, 10, 3)
    assert (avg == 150).all()


@pytest.mark.parametrize("patch", [16, 32])
def test_clip_face_shapes_mask_and_batch_grouping(patch: int, tiny_clips: dict[int, Path],
                                                  media_dir: Path) -> None:
    items = _items(media_dir)
    upstream = fake_face_upstream(items)
    ups = [upstream[it.video_id] for it in items]
    results = {}
    for batch in (1, 4, 64):
        ext = ClipFaceExtractor(ClipFaceConfig(model=str(tiny_clips[patch]), batch_size=batch, max_side=160))
        results[batch] = ext.extract_batch(items, ups)
    for feats, up in zip(results[64], ups, strict=True):
        face = up["face"]
        assert feats.values.shape == (face.n_rows, 16)
        assert feats.values.dtype == np.float32
        assert np.array_equal(feats.mask, face.mask)
        assert np.array_equal(feats.frame, face.frame)
        assert (feats.values[~feats.mask] == 0).all()
        assert np.abs(feats.values[feats.mask]).sum() > 0
    for batch in (1, 4):
        for a, b in zip(results[batch], results[64], strict=True):
            assert a.allclose(b, rtol=1e-4, atol=1e-5)
    # Items alone give the same rows as items batched with others.
    single = ClipFaceExtractor(ClipFaceConfig(model=str(tiny_clips[patch]), max_side=160))
    alone = single.extract(items[1], ups[1])
    assert alone.allclose(results[64][1], rtol=1e-4, atol=1e-5)


def test_clip_face_equals_the_hf_model_on_the_same_crops(tiny_clips: dict[int, Path],
                                                         media_dir: Path) -> None:
    import torch
    from transformers import AutoImageProcessor, CLIPModel

    item = _items(media_dir)[1]
    face = fake_face_upstream([item])[item.video_id]["face"]
    cfg = ClipFaceConfig(model=str(tiny_clips[16]), max_side=160, crop_margin=0.3)
    ours = ClipFaceExtractor(cfg).extract(item, {"face": face})
    layout = FaceLayout.from_attrs(dict(face.attrs))
    crops, rows = [], []
    for row, vf in face_row_frames(item, face, cfg.max_side):
        crops.append(row_crops(vf.rgb, face.values[row], layout, "largest", margin=0.3, square=True)[0])
        rows.append(row)
    model = CLIPModel.from_pretrained(str(tiny_clips[16])).eval()
    processor = AutoImageProcessor.from_pretrained(str(tiny_clips[16]))
    with torch.no_grad():
        ref = model.get_image_features(**processor(images=crops, return_tensors="pt")).pooler_output.numpy()
    assert len(rows) == int(ours.mask.sum()) > 0
    np.testing.assert_allclose(ours.values[rows], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("crop_size", [224, 300])
def test_batched_preprocessing_equals_the_hf_processor(tiny_clips: dict[int, Path], crop_size: int) -> None:
    from transformers import AutoImageProcessor

    from affectcache.extractors.common.clip_preprocess import ClipPreprocessor

    # 300 > the 224 shortest edge: the processor's zero padding in the centre crop.
    processor = AutoImageProcessor.from_pretrained(str(tiny_clips[16]),
                                                   crop_size={"height": crop_size, "width": crop_size})
    rng = np.random.default_rng(0)
    # (Not 3 or 1 pixels high: the processor guesses such images are channels-first.)
    shapes = [(17, 40), (224, 224), (301, 120), (96, 97), (640, 360), (5, 500)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    ours = ClipPreprocessor(processor)
    assert not ours.fallback
    ref = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(ours(images), ref)
    # The device-side path (uint8 planes, table lookup in torch) gives the same numbers.
    np.testing.assert_array_equal(ours.normalise(torch.from_numpy(ours.crops(images))).numpy(), ref)
    fixed = AutoImageProcessor.from_pretrained(str(tiny_clips[16]), size={"height": 64, "width": 64})
    assert ClipPreprocessor(fixed).fallback  # settings it does not reproduce go through the processor
    np.testing.assert_array_equal(ClipPreprocessor(fixed)(images),
                                  fixed(images=images, return_tensors="np")["pixel_values"])


def test_overlapped_forwards_give_the_same_embeddings(tiny_clips: dict[int, Path], media_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA each forward runs beside the next batch's decoding and preprocessing; the arrays must not
    change (checked on CPU by forcing the overlapped path)."""
    from affectcache.extractors.common.image_embedding import _Embedder

    items = _items(media_dir)
    ups = [fake_face_upstream(items)[it.video_id] for it in items]
    face_cfg = ClipFaceConfig(model=str(tiny_clips[16]), max_side=160, batch_size=3)
    scene_cfg = ClipSceneConfig(model=str(tiny_clips[32]), fps=4.0, batch_size=2, max_side=160)
    plain_face = ClipFaceExtractor(face_cfg).extract_batch(items, ups)
    plain_scene = ClipSceneExtractor(scene_cfg).extract_batch(items)
    monkeypatch.setattr(_Embedder, "_overlap", lambda self: True)
    for a, b in zip(plain_face, ClipFaceExtractor(face_cfg).extract_batch(items, ups), strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.mask, b.mask)
    for a, b in zip(plain_scene, ClipSceneExtractor(scene_cfg).extract_batch(items), strict=True):
        np.testing.assert_array_equal(a.values, b.values)


def test_overlapped_forward_runs_beside_the_next_batch() -> None:
    import threading

    from affectcache.extractors.common.image_embedding import ImageBatcher

    events: list[tuple[str, int, str]] = []
    release = threading.Event()

    class Slow:
        def prepare(self, images: list[np.ndarray]) -> list[int]:
            first = int(images[0][0, 0, 0])
            events.append(("prepare", first, threading.current_thread().name))
            if first == 2:
                release.set()  # batch 0's forward may finish only now
            return [int(im[0, 0, 0]) for im in images]

        def forward(self, prepared: list[int]) -> np.ndarray:
            if prepared[0] == 0:
                assert release.wait(5)  # in flight while the caller prepares the next batch
            events.append(("forward", prepared[0], threading.current_thread().name))
            return np.asarray([[v, v] for v in prepared], dtype=np.float32)

    target = np.zeros((4, 2), dtype=np.float32)
    with ImageBatcher(Slow(), 2, overlap=True) as batcher:
        for i in range(4):
            batcher.add(np.full((4, 4, 3), i, np.uint8), target, (i,))
        batcher.finish()
    assert [e[:2] for e in events] == [("prepare", 0), ("prepare", 2), ("forward", 0), ("forward", 2)]
    assert all(name.startswith("affectcache-forward") for kind, _, name in events if kind == "forward")
    np.testing.assert_array_equal(target[:, 0], [0, 1, 2, 3])


def test_a_failing_overlapped_forward_is_raised() -> None:
    from affectcache.extractors.common.image_embedding import ImageBatcher

    class Broken:
        def prepare(self, images: list[np.ndarray]) -> list[np.ndarray]:
            return images

        def forward(self, prepared: list[np.ndarray]) -> np.ndarray:
            raise RuntimeError("simulated forward bug")

    target = np.zeros((4, 2), dtype=np.float32)

    def embed_all() -> None:
        with ImageBatcher(Broken(), 2, overlap=True) as batcher:
            for i in range(4):
                batcher.add(np.zeros((4, 4, 3), np.uint8), target, (i,))
            batcher.finish()

    with pytest.raises(RuntimeError, match="simulated forward bug"):
        embed_all()


def test_clip_face_all_policy_has_a_slot_axis(tiny_clips: dict[int, Path], media_dir: Path) -> None:
    items = _items(media_dir)[:1]
    up = fake_face_upstream(items, policy="all", max_faces=2)["a"]
    feats = ClipFaceExtractor(ClipFaceConfig(model=str(tiny_clips[32]), max_side=160)).extract(items[0], up)
    assert feats.values.shape == (up["face"].n_rows, 2, 16)
    assert (feats.values[:, 1] == 0).all()
    assert np.abs(feats.values[feats.mask, 0]).sum() > 0


def test_clip_scene_rows_follow_sampling_and_batches_cross_videos(tiny_clips: dict[int, Path],
                                                                  media_dir: Path) -> None:
    items = _items(media_dir)
    one = ClipSceneExtractor(ClipSceneConfig(model=str(tiny_clips[32]), fps=4.0, batch_size=1, max_side=160))
    many = ClipSceneExtractor(ClipSceneConfig(model=str(tiny_clips[32]), fps=4.0, batch_size=5, max_side=160))
    a, b = one.extract_batch(items), many.extract_batch(items)
    assert [f.n_rows for f in b] == [4, 8, 3]
    assert all(f.values.shape[1] == 16 and f.mask is None for f in b)
    for x, y in zip(a, b, strict=True):
        assert x.allclose(y, rtol=1e-4, atol=1e-5)
    scd = scd_clip_scene_config(model=str(tiny_clips[32]), max_side=160)
    assert scd.n_frames == 30
    assert scd.fps is None
    uniform = ClipSceneExtractor(scd.replace(n_frames=5)).extract(items[1])
    assert uniform.n_rows == 5


def test_fingerprints_follow_output_fields(tiny_clips: dict[int, Path]) -> None:
    base = ClipFaceConfig(model=str(tiny_clips[16]))
    assert base.replace(crop_margin=0.2).fingerprint() != base.fingerprint()
    assert base.replace(square=False).fingerprint() != base.fingerprint()
    assert base.replace(batch_size=7, dtype="float32").fingerprint() == base.fingerprint()
    assert ClipFaceExtractor.requires == ("face",)


def test_rebuilding_face_makes_clip_face_stale(face_assets: Path, tiny_clips: dict[int, Path],
                                               media_dir: Path, store_path: Path) -> None:
    from affectcache.store.runner import build
    from affectcache.store.status import store_status
    from affectcache.store.zarr_store import FeatureStore

    items = _items(media_dir)[:2]
    fs = FeatureStore(store_path)
    build("face", items, fs, config=FaceConfig(fps=2.0, max_side=64), workers=0)
    report = build("clip-face", items, fs, config=ClipFaceConfig(model=str(tiny_clips[32]), max_side=64),
                   workers=0)
    assert report.ok
    assert sorted(report.written) == ["a", "b"]
    assert all(fs.read("clip-face", v).attrs["no_face"] for v in ("a", "b"))

    def stale(name: str) -> bool:
        return bool(next(s for s in store_status(fs) if s.name == name).stale)

    assert not stale("clip-face")
    build("face", items, fs, config=FaceConfig(fps=3.0, max_side=64), workers=0, overwrite=True)
    assert stale("clip-face")


def test_status_lists_videos_without_a_face(face_assets: Path, face_videos: dict[str, Path], media_dir: Path,
                                            store_path: Path) -> None:
    from affectcache.store.faces import videos_without_face
    from affectcache.store.runner import build

    items = [MediaItem(video_id="a", path=str(media_dir / "a.mp4")),
             MediaItem(video_id="one", path=str(face_videos["one"]))]
    build("face", items, store_path, config=FaceConfig(fps=2.0, max_side=128), workers=0)
    from affectcache.store.zarr_store import FeatureStore

    fs = FeatureStore(store_path)
    assert videos_without_face(fs) == ["a"]
    from affectcache.store.status import store_status

    face_status = {s.name: s for s in store_status(fs)}["face"]
    assert list(face_status.warnings) == ["a"]
    assert face_status.warnings["a"].startswith("no face found in any of")
