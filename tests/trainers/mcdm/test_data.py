"""Clip-level data step: mean‖std aggregation, corpora from stores and manifests, NaN labels, batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from affectcache.extractors import FeatureArray, MediaItem
from affectcache.store.manifest import Manifest
from affectcache.store.packed import PackedModality
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.mcdm.data import ClipDataset, aggregate_mean_std, load_clip_corpus

if TYPE_CHECKING:
    from pathlib import Path


def segments(vid: str, values: np.ndarray, mask: np.ndarray | None = None) -> FeatureArray:
    n = values.shape[0]
    start = np.arange(n, dtype=np.float64)
    return FeatureArray(video_id=vid, kind="segment", values=values, start_s=start, end_s=start + 1,
                        mask=mask)


def per_entry_reference(packed: PackedModality) -> tuple[np.ndarray, np.ndarray]:
    dim = packed.values.shape[-1]
    out = np.zeros((len(packed), 2 * dim))
    present = np.zeros(len(packed), bool)
    for i, entry in enumerate(packed.entries()):
        rows = entry.values[entry.mask].astype(np.float64).reshape(-1, dim)
        if len(rows):
            out[i] = np.concatenate([rows.mean(0), rows.std(0)])
            present[i] = True
    return out, present


@pytest.mark.parametrize(("row_shape", "dtype"), [((5,), np.float32), ((3, 4), np.float16)])
@pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
def test_aggregation_matches_a_per_entry_loop(row_shape: tuple[int, ...], dtype: type,
                                              chunk_bytes: int) -> None:
    rng = np.random.default_rng(0)
    lengths = [3, 0, 1, 7, 4, 0, 2, 5]
    entries = []
    for i, n in enumerate(lengths):
        values = (rng.normal(size=(n, *row_shape)) * 3 + 100).astype(dtype)   # large mean: stability check
        mask = rng.random(n) > 0.3
        if i == 4:
            mask[:] = False                                                  # no valid row at all
        entries.append(segments(f"v{i}", values, mask))
    packed = PackedModality.from_entries("feat", "segment", entries)
    got = aggregate_mean_std(packed, chunk_bytes=chunk_bytes)
    want, present = per_entry_reference(packed)
    np.testing.assert_array_equal(got.present, present)
    assert not got.present[[1, 4, 5]].any()
    np.testing.assert_allclose(got.values, want, atol=2e-4 if dtype is np.float16 else 1e-5, rtol=1e-6)
    assert got.values.shape == (len(lengths), 2 * row_shape[-1])


def test_aggregation_refuses_text_rows() -> None:
    start = np.zeros(1)
    text = FeatureArray(video_id="a", kind="text", values=np.array(["hello"]), start_s=start, end_s=start + 1)
    with pytest.raises(TypeError, match="text-embedding"):
        aggregate_mean_std(PackedModality.from_entries("transcript", "text", [text]))


def _prov() -> dict[str, Any]:
    return {"extractor": "feat", "version": "1", "modality_kind": "segment", "config": {},
            "config_fingerprint": "a" * 64, "upstream": {}, "model": {"id": None, "revision": None,
                                                                       "sha256": None},
            "libraries": {}, "created": "now"}


def _store(path: Path, modalities: dict[str, dict[str, np.ndarray]]) -> FeatureStore:
    fs = FeatureStore(path)
    for name, rows in modalities.items():
        fs.init_modality(name, _prov())
        for vid, values in rows.items():
            fs.write(name, segments(vid, values))
    return fs


def _item(vid: str, corpus: str, split: str, **labels: Any) -> MediaItem:
    return MediaItem(video_id=vid, path=f"/media/{vid}.mp4", split=split, corpus=corpus, labels=labels)


@pytest.fixture
def two_corpora(tmp_path: Path) -> tuple[Any, Any]:
    rng = np.random.default_rng(1)
    mosei_store = _store(tmp_path / "mosei.zarr", {
        "clip-face": {v: rng.normal(size=(4, 3)).astype(np.float32) for v in ("m1", "m2", "m3")},
        "clap-audio": {v: rng.normal(size=(2, 5)).astype(np.float32) for v in ("m1", "m3")},  # m2: none
    })
    mosei = Manifest(items=(
        _item("m1", "mosei", "train", happy=2.0, sad=0.0, anger=1.0, surprise=0.0, disgust=0.0, fear=0.0),
        _item("m2", "mosei", "train", happy=0.0, sad=0.0, anger=0.0, surprise=0.0, disgust=0.0, fear=0.0),
        _item("m3", "mosei", "test", happy=None, sad=0.0, anger=0.0, surprise=0.0, disgust=0.0, fear=0.0),
    ))
    fiv2_store = _store(tmp_path / "fiv2.zarr", {
        "clip-face": {v: rng.normal(size=(3, 3)).astype(np.float32) for v in ("f1", "f2")},
    })
    traits = {"openness": 0.1, "conscientiousness": 0.2, "extraversion": 0.3, "agreeableness": 0.4,
              "neuroticism": 0.5, "non-neuroticism": 0.5}
    fiv2 = Manifest(items=(_item("f1", "fiv2", "train", **traits), _item("f2", "fiv2", "val", **traits)))
    modalities = {"face": "clip-face", "audio": "clap-audio"}
    with pytest.raises(ValueError, match="no modality 'clap-audio'"):
        load_clip_corpus(fiv2_store, fiv2, modalities)
    return (load_clip_corpus(mosei_store, mosei, modalities),
            load_clip_corpus(fiv2_store, fiv2, {"face": "clip-face"}))


def test_corpus_vectors_follow_the_manifest_and_the_store(two_corpora: tuple[Any, Any]) -> None:
    mosei, fiv2 = two_corpora
    assert mosei.name == "mosei"
    assert mosei.features["audio"].present.tolist() == [True, False, True]
    assert fiv2.features["face"].values.shape == (2, 6)
    # Labels: SDK intensities -> [Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise], sum 1.
    np.testing.assert_allclose(mosei.labels.emotion[0], [0, 1 / 3, 0, 0, 2 / 3, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(mosei.labels.emotion[1], [1, 0, 0, 0, 0, 0, 0])       # all zero: neutral
    assert np.isnan(mosei.labels.emotion[2]).all()                                   # a missing value
    assert np.isnan(mosei.labels.personality).all()
    assert np.isnan(mosei.labels.ah).all()
    np.testing.assert_allclose(fiv2.labels.personality[0], [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)


def test_concatenated_batches_keep_modalities_present_in_all_examples(two_corpora: tuple[Any, Any]) -> None:
    dataset = ClipDataset(two_corpora)
    assert len(dataset) == 5
    assert dataset.modality_dims == {"audio": 10, "face": 6}
    both = dataset.batch(torch.tensor([0, 2]))
    assert set(both.features) == {"audio", "face"}
    mixed = dataset.batch(torch.tensor([0, 3]))                 # the FIv2 clip has no audio
    assert set(mixed.features) == {"face"}
    assert torch.isnan(mixed.labels["emotion"][1]).all()
    assert torch.isfinite(mixed.labels["personality"][1]).all()
    assert dataset.indices(split="train").tolist() == [0, 1, 3]
    assert dataset.indices(corpus="fiv2").tolist() == [3, 4]
    shuffled = dataset.batches(torch.arange(5), 2, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat([b.index for b in shuffled]).tolist()) == [0, 1, 2, 3, 4]
