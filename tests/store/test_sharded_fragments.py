"""Arrays longer than one chunk are written as one Zarr v3 shard: one file, read directly here and by plain
zarr / xarray without affectcache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
import zarr

from affectcache.extractors import FeatureArray
from affectcache.store.format import fragments as fragments_module
from affectcache.store.format.fragments import FRAGMENTS_GROUP
from affectcache.store.zarr_store import FeatureStore
from tests.store.test_zarr_store import prov

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_multi_chunk_arrays_are_one_shard_file_that_every_reader_agrees_on(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fragments_module, "TARGET_CHUNK_BYTES", 1000)  # 15 rows of 16 float32 per chunk
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    rng = np.random.default_rng(0)
    feats = [FeatureArray(video_id=f"v{i}", kind="frame",
                          values=rng.standard_normal((7 + i, 16)).astype(np.float32),
                          frame=np.arange(7 + i), time_s=np.arange(7 + i) / 10.0,
                          mask=np.arange(7 + i) % 3 > 0)
             for i in range(6)]  # 57 rows: the last inner chunk is padded
    info = fs.write_fragment("feat", [(f, None) for f in feats])
    fs.commit("feat", [info])
    folder = store_path / "feat" / FRAGMENTS_GROUP / info.fragment_id
    assert sorted(p.name for p in (folder / "values").iterdir()) == ["0.0", "zarr.json"]
    values = np.concatenate([f.values for f in feats])
    mask = np.concatenate([f.mask for f in feats if f.mask is not None])
    plain = zarr.open_array(str(folder / "values"), mode="r")
    assert plain.chunks == (15, 16)  # inner chunks: zarr reads them one by one from the shard
    np.testing.assert_array_equal(plain[:], values)
    ds = xr.open_zarr(str(folder), consolidated=False)
    np.testing.assert_array_equal(ds["values"].values, values)
    np.testing.assert_array_equal(ds["mask"].values, mask)
    reader = FeatureStore(store_path, read_only=True)
    packed = reader.load("feat")
    np.testing.assert_array_equal(packed.values, values)
    np.testing.assert_array_equal(packed.mask, mask)
    np.testing.assert_array_equal(packed.row_arrays["time_s"], np.concatenate([f.time_s for f in feats]))
    np.testing.assert_array_equal(reader.read("feat", "v4").values, feats[4].values)


def test_a_shard_laid_out_otherwise_is_read_through_zarr_not_misread(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fragments_module, "TARGET_CHUNK_BYTES", 1000)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    values = np.arange(30 * 16, dtype=np.float32).reshape(30, 16)
    info = fs.write_fragment("feat", [(FeatureArray(video_id="v", kind="frame", values=values,
                                                    frame=np.arange(30), time_s=np.arange(30) / 10.0), None)])
    fs.commit("feat", [info])
    shard = store_path / "feat" / FRAGMENTS_GROUP / info.fragment_id / "values" / "0.0"
    # Swap the two inner chunks on disk and in the index: the same array, another layout.
    raw = shard.read_bytes()
    chunk = 15 * 16 * 4
    index = np.frombuffer(raw[2 * chunk:], dtype="<u8").reshape(2, 2)[::-1].copy()
    shard.write_bytes(raw[chunk: 2 * chunk] + raw[:chunk] + index.tobytes())
    reader = FeatureStore(store_path, read_only=True)
    np.testing.assert_array_equal(reader.load("feat").values, values)
    assert not reader._meta("feat", info.fragment_id, "values").direct  # type: ignore[union-attr]
