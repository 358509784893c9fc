"""FeatureStore: layout, provenance checks, commit marker, hostile ids, plain zarr/xarray access."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xarray as xr
import zarr

from affectcache.extractors import FeatureArray
from affectcache.store.errors import (
    FeatureNotFoundError,
    InvalidVideoIdError,
    ProvenanceMismatchError,
    StoreError,
)
from affectcache.store.zarr_store import FeatureStore

if TYPE_CHECKING:
    from pathlib import Path


def prov(**changes: Any) -> dict[str, Any]:
    base = {"extractor": "feat", "version": "1", "modality_kind": "frame",
            "config": {"dim": 3, "device": "cpu"}, "config_fingerprint": "a" * 64, "upstream": {},
            "model": {"id": None, "revision": None, "sha256": None},
            "libraries": {"python": "3.11"}, "created": "now"}
    base.update(changes)
    return base


def frames(vid: str, n: int = 5, dim: int = 3, seed: int = 0) -> FeatureArray:
    rng = np.random.default_rng(seed)
    frame = np.arange(n)
    return FeatureArray(video_id=vid, kind="frame", values=rng.random((n, dim)).astype(np.float32),
                        frame=frame, time_s=frame / 25.0, mask=frame % 2 == 0, attrs={"fps": 25.0})


def test_write_read_round_trip_and_layout(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    original = frames("vid_1")
    fs.write("feat", original, source={"path": "/x.mp4", "size": 10})
    fs.write("feat", frames("vid_2", n=2, seed=3))
    back = fs.read("feat", "vid_1")
    assert back.allclose(original, rtol=0, atol=0)
    assert back.attrs == {"fps": 25.0}
    assert fs.videos("feat") == ["vid_1", "vid_2"]
    assert fs.entry_states("feat")["vid_1"].source == {"path": "/x.mp4", "size": 10}
    # Plain zarr, no affectcache: provenance at the modality, one group per fragment.
    root = zarr.open_group(str(store_path), mode="r")
    assert root.attrs["affectcache"]["layout"] == 2
    assert root["feat"].attrs["affectcache"]["extractor"] == "feat"
    fragment_ids = sorted(root["feat/fragments"].group_keys())
    assert len(fragment_ids) == 2
    frag = root[f"feat/fragments/{fragment_ids[0]}"]
    assert frag.attrs["affectcache_fragment"]["n_rows"] == 5
    assert frag["frame"].dtype == np.int64
    assert frag["time_s"].dtype == np.float64
    assert frag["mask"].dtype == np.bool_
    np.testing.assert_array_equal(frag["values"][...], original.values)
    ds = xr.open_zarr(str(store_path), group=f"feat/fragments/{fragment_ids[0]}", consolidated=False)
    assert ds["values"].dims == ("row", "feature")
    assert {"frame", "time_s", "video_id"} <= set(ds.coords)
    assert list(ds["video_id"].values) == ["vid_1"]
    np.testing.assert_array_equal(ds["frame"].values, np.arange(5))


def test_text_modality_round_trip(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("captions", prov(modality_kind="text"))
    texts = FeatureArray(video_id="-3g5yACwYnA", kind="text", values=np.array(["a smile", "ünïcödé", ""]),
                         start_s=[0.0, 1.0, 2.0], end_s=[1.0, 2.0, 3.0])
    fs.write("captions", texts)
    back = fs.read("captions", "-3g5yACwYnA")
    assert list(back.values) == ["a smile", "ünïcödé", ""]
    ds = fs.open_dataset("captions")
    assert list(ds["values"].values) == ["a smile", "ünïcödé", ""]


def test_uncommitted_fragment_is_invisible_and_rewritable(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.write("feat", frames("done"))
    # A worker killed after writing its fragment but before the driver committed it.
    orphan = fs.write_fragment("feat", [(frames("crashed"), None)])
    assert (store_path / "feat" / "fragments" / orphan.fragment_id / "values").is_dir()
    assert not fs.has("feat", "crashed")
    assert fs.videos("feat") == ["done"]
    assert "crashed" not in fs.entry_states("feat")
    with pytest.raises(FeatureNotFoundError, match="not in"):
        fs.read("feat", "crashed")
    assert fs.load("feat").video_ids == ("done",)
    fs.write("feat", frames("crashed", n=4))
    assert fs.read("feat", "crashed").n_rows == 4


def test_rewriting_an_entry_supersedes_it(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.write("feat", frames("v", n=3))
    fs.write("feat", frames("w"))
    fs.write("feat", frames("v", n=6, seed=9))
    assert fs.videos("feat") == ["v", "w"]
    assert fs.read("feat", "v").allclose(frames("v", n=6, seed=9), rtol=0, atol=0)
    packed = fs.load("feat")
    np.testing.assert_array_equal(packed.offsets, [0, 6, 11])
    assert len(fs.catalog("feat").retired()) == 1  # the first fragment of v is garbage now


def test_a_commit_record_left_without_content_is_ignored_and_its_version_reused(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.write("feat", frames("a"))
    log = next(p for p in (store_path / "feat" / "_log").iterdir() if p.is_dir())
    (log / "v0000000001").mkdir()  # a committer died between creating the folder and the record
    assert fs.videos("feat") == ["a"]
    fs.write("feat", frames("b"))
    assert FeatureStore(store_path).videos("feat") == ["a", "b"]
    assert (log / "v0000000001" / "zarr.json").is_file()


def test_changed_config_or_version_or_model_is_refused(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.write("feat", frames("v"))
    fs.init_modality("feat", prov(created="later", libraries={"python": "3.12"}))  # same identity: fine
    changed = prov(config={"dim": 4, "device": "cpu"}, config_fingerprint="b" * 64)
    with pytest.raises(ProvenanceMismatchError, match=r"dim: 3 -> 4.*rebuild"):
        fs.init_modality("feat", changed)
    with pytest.raises(ProvenanceMismatchError, match="version '1' != '2'"):
        fs.init_modality("feat", prov(version="2"))
    with pytest.raises(ProvenanceMismatchError, match="model"):
        fs.init_modality("feat", prov(model={"id": "m", "revision": None, "sha256": "c" * 64}))
    assert fs.videos("feat") == ["v"]  # refusals wrote nothing
    fs.init_modality("feat", changed, overwrite=True)
    assert fs.videos("feat") == []
    assert fs.provenance("feat")["config"]["dim"] == 4


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "", "x" * 201, "sp ace", "..", "a\\b"])
def test_hostile_ids_never_write(store_path: Path, bad: str) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    with pytest.raises((InvalidVideoIdError, ValueError)):
        fs.write("feat", frames(bad))
    assert not (store_path.parent / "escape").exists()
    assert fs.entry_states("feat") == {}


def test_kind_mismatch_and_bad_modality_names(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    seg = FeatureArray(video_id="v", kind="segment", values=np.ones((1, 2)), start_s=[0.0], end_s=[1.0])
    with pytest.raises(StoreError, match="'segment' rows but the modality is 'frame'"):
        fs.write("feat", seg)
    for name in ("Bad", "../x", "labels", "_affectcache"):
        with pytest.raises(StoreError, match="invalid modality name"):
            fs.init_modality(name, prov())


def test_nan_values_are_refused_before_the_store() -> None:
    with pytest.raises(ValueError, match="NaN/Inf"):
        FeatureArray(video_id="v", kind="frame", values=np.array([[np.nan]]), frame=[0], time_s=[0.0])


def test_delete_entries_and_modality(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    for vid in ("a", "b", "c"):
        fs.write("feat", frames(vid))
    fs.record_failures("feat", {"b": {"error": "BadMediaError", "message": "x", "time": "t"}})
    fs.delete("feat", ["b"])
    assert fs.videos("feat") == ["a", "c"]
    assert fs.failures("feat") == {}
    fs.delete("feat")
    assert fs.modalities() == []


def test_label_tracks_live_under_labels(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    name = fs.init_label_track("valence", source="unit test")
    assert name == "labels/valence"
    fs.write(name, FeatureArray(video_id="v", kind="frame", values=np.linspace(-1, 1, 4).astype(np.float32),
                                frame=np.arange(4), time_s=np.arange(4) / 30))
    assert fs.label_tracks() == ["valence"]
    assert fs.modalities() == []
    assert fs.read(name, "v").values.shape == (4,)
    meta = json.loads((store_path / "labels" / "valence" / "zarr.json").read_text())
    assert meta["attributes"]["affectcache"]["extractor"] == "labels"


def test_open_dataset_is_lazy_and_concatenates(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.write("feat", frames("a", n=3))
    fs.write("feat", frames("b", n=4, seed=1))
    ds = fs.open_dataset("feat")
    assert ds.sizes["row"] == 7
    assert list(ds["video_id"].values) == ["a", "b"]
    assert list(ds["entry"].values) == [0] * 3 + [1] * 4
    assert list(ds["row_start"].values) == [0, 3]
    assert ds.attrs["affectcache"]["extractor"] == "feat"
    assert type(ds["values"].data).__module__.startswith("dask")
    np.testing.assert_allclose(ds["values"].values[3:], fs.read("feat", "b").values)
    np.testing.assert_array_equal(ds["mask"].values[:3], frames("a", n=3).mask)


def test_open_dataset_in_storage_order_when_it_differs_from_id_order(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    c = FeatureArray(video_id="c", kind="frame", values=np.ones((2, 3), np.float32), frame=np.arange(2),
                     time_s=np.arange(2) / 30, attrs={"warning": "dark"})
    # One fragment holding "d" then "a", another "c": id order a, c, d; storage order d, a | c.
    pair = [(frames("d", n=4, seed=1), None), (frames("a", n=3), None)]
    fs.commit("feat", [fs.write_fragment("feat", pair)])
    fs.commit("feat", [fs.write_fragment("feat", [(c, None)])])
    ds = fs.open_dataset("feat")
    assert list(ds["video_id"].values) == ["d", "a", "c"]
    assert list(ds["row_start"].values) == [0, 4, 7]
    assert list(ds["entry"].values) == [0] * 4 + [1] * 3 + [2] * 2
    np.testing.assert_allclose(ds["values"].values[4:7], fs.read("feat", "a").values)
    np.testing.assert_allclose(ds["values"].values[7:], 1.0)
    fps = {"fps": 25.0}  # frames() attrs
    assert ds.attrs["entry_attrs"] == {"a": fps, "c": {"warning": "dark"}, "d": fps}
    part = fs.open_dataset("feat", ["c", "a"])
    assert list(part["video_id"].values) == ["c", "a"]
    np.testing.assert_allclose(part["values"].values[2:], fs.read("feat", "a").values)
    assert part.attrs["entry_attrs"] == {"a": fps, "c": {"warning": "dark"}}


def test_fsspec_memory_url_store() -> None:
    fs = FeatureStore("memory://affectcache-unit-test")
    fs.init_modality("feat", prov(), overwrite=True)
    fs.write("feat", frames("v"))
    assert fs.read("feat", "v").n_rows == 5
    assert fs.local_path is None


def test_read_only_store_refuses_writes(store_path: Path) -> None:
    FeatureStore(store_path).init_modality("feat", prov())
    ro = FeatureStore(store_path, read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        ro.write("feat", frames("v"))
    with pytest.raises(FeatureNotFoundError):
        FeatureStore(store_path.parent / "absent.zarr", read_only=True)


def test_load_packs_a_whole_modality(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    written = {vid: frames(vid, n=n, seed=n) for vid, n in (("a", 3), ("b", 5), ("c", 1))}
    for feats in written.values():
        fs.write("feat", feats)
    packed = fs.load("feat")
    assert packed.video_ids == ("a", "b", "c")
    np.testing.assert_array_equal(packed.offsets, [0, 3, 8, 9])
    assert packed.provenance["extractor"] == "feat"
    for vid, feats in written.items():
        assert packed.entry(vid).allclose(feats, rtol=0, atol=0)
        assert packed.entry(vid).attrs == {"fps": 25.0}
    subset = fs.load("feat", ["c", "a"])
    assert subset.video_ids == ("c", "a")
    np.testing.assert_array_equal(subset.values[subset.rows("a")], written["a"].values)
    with pytest.raises(KeyError, match="'b' is not loaded"):
        subset.rows("b")


_RACER = """
import sys, time
from affectcache.store.zarr_store import FeatureStore
base, start, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    while time.time() < start + 0.05 * i:
        pass
    FeatureStore(f"{base}/s{i}.zarr").private_dir()  # the root group, then the locks group
print("ok")
"""


@pytest.mark.slow
def test_processes_creating_the_same_new_store_all_open_it(tmp_path: Path) -> None:
    # Mode "a" checks, then creates: before the fix about a quarter of such racers died with
    # ContainsGroupError. Each racer creates the same 20 new stores at the same instants.
    import subprocess
    import sys
    import time

    start = time.time() + 3.0  # every racer imported and waiting
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), str(start), "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [out.strip() for out, _ in outputs] == ["ok"] * 3, [err[-400:] for _, err in outputs]
    for i in range(20):
        assert FeatureStore(tmp_path / f"s{i}.zarr", read_only=True).modalities() == []


def test_a_mistyped_modality_or_label_track_gets_a_suggestion(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("clip-face", prov())
    fs.write("clip-face", frames("v"))
    fs.init_label_track("valence", source="test")
    with pytest.raises(FeatureNotFoundError,
                       match=r"'clip-fase' is not in the store .* \(did you mean 'clip-face'\?\)"):
        fs.provenance("clip-fase")
    with pytest.raises(FeatureNotFoundError, match=r"\(did you mean 'labels/valence'\?\)"):
        fs.videos("labels/valense")
    with pytest.raises(FeatureNotFoundError) as missing:
        fs.read("clip-face", "w")
    assert "did you mean" not in str(missing.value)
