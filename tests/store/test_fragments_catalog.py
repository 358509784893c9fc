"""Store format 2: catalog commits and checkpoints, compaction, rebuilds beside live data, old-store upgrade,
crash safety (kill -9 during a fragment write and during compaction), concurrent builders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

import tests.helpers  # noqa: F401  (registers the test-only extractors)
from affectcache.cli.main import app
from affectcache.extractors import FeatureArray, MediaItem
from affectcache.store.errors import OldLayoutError
from affectcache.store.format import catalog as catalog_module
from affectcache.store.format.catalog import Catalog, CatalogState
from affectcache.store.format.compaction import CompactionPolicy, compact, vacuum
from affectcache.store.format.fragments import FRAGMENTS_GROUP
from affectcache.store.manifest import write_manifest
from affectcache.store.runner import build
from affectcache.store.zarr_store import FeatureStore
from tests.helpers import make_items, store_snapshot
from tests.store.test_zarr_store import frames, prov

REPO_ROOT = Path(__file__).resolve().parents[2]


def packed_arrays(fs: FeatureStore, name: str) -> dict[str, Any]:
    packed = fs.load(name)
    return {"ids": packed.video_ids, "offsets": packed.offsets, "values": packed.values, "mask": packed.mask,
            **packed.row_arrays, "attrs": packed.entry_attrs}


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def live_fragments(path: Path, name: str) -> list[str]:
    return sorted(p.name for p in (path / name / FRAGMENTS_GROUP).iterdir() if p.is_dir())


# ---- catalog -------------------------------------------------------------------------------------
def test_checkpoints_keep_everything_and_trim_the_log(store_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 4)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    sources = [{"path": "/a", "size": 3, "mtime": 1.5, "start_s": None, "end_s": None},
               {"path": "/b", "size": None, "mtime": None, "start_s": 0.5, "end_s": 2.0, "extra": [1, 2]}]
    for i in range(11):
        feats = FeatureArray(video_id=f"v{i:02d}", kind="frame", values=np.full((2, 3), i, np.float32),
                             frame=[0, 1], time_s=[0.0, 0.1], attrs={"warning": "dark"} if i == 3 else {})
        fs.write("feat", feats, source=sources[i % 2])
    fs.record_failures("feat", {"bad": {"error": "BadMediaError", "message": "m", "time": "t"}})
    fs.delete("feat", ["v05"])
    log = store_path / "feat" / "_log"
    names = sorted(p.name for g in log.iterdir() if g.is_dir() for p in g.iterdir() if p.is_dir())
    assert any(n.startswith("c") for n in names)
    assert "v0000000000" not in names  # trimmed behind the checkpoints
    fresh = FeatureStore(store_path, read_only=True)
    state = fresh.catalog("feat")
    assert state.videos() == [f"v{i:02d}" for i in range(11) if i != 5]
    assert state["v01"].source == sources[1]
    assert state["v02"].source == sources[0]
    assert state.warnings() == {"v03": "dark"}
    assert set(state.failures) == {"bad"}
    np.testing.assert_array_equal(fresh.read("feat", "v10").values, np.full((2, 3), 10, np.float32))
    # The checkpoint's columns and a replay of the same records agree.
    again = CatalogState.from_checkpoint(*state.to_checkpoint())
    assert again.videos() == state.videos()
    assert [again[v] for v in again.videos()] == [state[v] for v in state.videos()]


def test_concurrent_committers_never_lose_a_commit(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    first, second = FeatureStore(store_path), FeatureStore(store_path)
    a = first.write_fragment("feat", [(frames("a"), None)])
    b = second.write_fragment("feat", [(frames("b"), None)])
    first.catalog("feat")
    second.catalog("feat")  # both read version -1, then race for version 0
    first.commit("feat", [a])
    second.commit("feat", [b])
    assert FeatureStore(store_path).videos("feat") == ["a", "b"]
    generation = next(p for p in (store_path / "feat" / "_log").iterdir() if p.is_dir()).name
    assert Catalog(fs.keys, "feat", generation).state().version == 1


# ---- compaction, rebuilds, deletes ----------------------------------------------------------------
def test_compaction_keeps_the_data_and_drops_garbage(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i:02d}" for i in range(12)])
    build("test-counting", items, store_path, workers=0, videos_per_task=2, compaction=None)
    fs = FeatureStore(store_path)
    build("test-counting", items, store_path, workers=0, only=["v03"], redo=["v03"], compaction=None)
    fs.delete("test-counting", ["v07"])
    before = packed_arrays(fs, "test-counting")
    reader = FeatureStore(store_path, read_only=True)
    reader.catalog("test-counting")  # a reader holding the pre-compaction catalog
    assert len(live_fragments(store_path, "test-counting")) == 7
    report = compact(fs, "test-counting", CompactionPolicy(orphan_age_s=0))
    assert report.fragments_after == 1
    # Superseded fragments stay for readers of the older catalog until the retention time has passed.
    assert (report.fragments_deleted, report.fragments_retained) == (0, 7)
    assert len(live_fragments(store_path, "test-counting")) == 8
    assert_same(packed_arrays(reader, "test-counting"), before)
    assert vacuum(fs, "test-counting", CompactionPolicy(retain_s=0)) == (7, 0)
    assert live_fragments(store_path, "test-counting") == sorted(fs.catalog("test-counting").live_rows())
    assert len(live_fragments(store_path, "test-counting")) == 1
    assert_same(packed_arrays(fs, "test-counting"), before)
    assert_same(packed_arrays(reader, "test-counting"), before)
    assert reader.read("test-counting", "v03").allclose(fs.read("test-counting", "v03"))
    # A compacted fragment is plain Zarr: xarray reads it without affectcache.
    fragment = live_fragments(store_path, "test-counting")[0]
    ds = xr.open_zarr(str(store_path), group=f"test-counting/{FRAGMENTS_GROUP}/{fragment}",
                      consolidated=False)
    assert list(ds["video_id"].values) == list(before["ids"])
    np.testing.assert_array_equal(ds["values"].values, before["values"])
    assert "v07" not in ds["video_id"].values


def test_build_compacts_many_small_fragments_at_the_end(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i:02d}" for i in range(10)])
    build("test-counting", items, store_path, workers=0, videos_per_task=1,
          compaction=CompactionPolicy(min_small_fragments=5))
    fs = FeatureStore(store_path)
    live = sorted(fs.catalog("test-counting").live_rows())
    assert len(live) == 1
    # The ten superseded fragments wait out the retention time; the next build's vacuum deletes them.
    assert len(live_fragments(store_path, "test-counting")) == 11
    build("test-counting", items, store_path, workers=0, compaction=CompactionPolicy(retain_s=60))
    assert len(live_fragments(store_path, "test-counting")) == 11  # retained: not 60 s old yet
    build("test-counting", items, store_path, workers=0, compaction=CompactionPolicy(retain_s=0))
    assert live_fragments(store_path, "test-counting") == live
    clean = tmp_path / "clean.zarr"
    build("test-counting", items, clean, workers=0, compaction=None)
    assert_same(packed_arrays(FeatureStore(store_path), "test-counting"),
                packed_arrays(FeatureStore(clean), "test-counting"))


def test_only_rebuild_and_delete_are_visible_in_load(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b", "c"])
    build("test-counting", items, store_path, workers=0)
    fs = FeatureStore(store_path)
    Path(items[1].path).write_bytes(b"q" * 1000)  # b's media changed: a rebuild gives other rows
    build("test-counting", items, store_path, workers=0, only=["b"], redo=["b"])
    packed = fs.load("test-counting")
    assert packed.video_ids == ("a", "b", "c")
    np.testing.assert_array_equal(packed.values[packed.rows("b")], fs.read("test-counting", "b").values)
    assert packed.entry("b").n_rows == 1000 % 17 + 3
    fs.delete("test-counting", ["a"])
    assert fs.load("test-counting").video_ids == ("b", "c")


def test_a_failed_rebuild_leaves_the_old_data_readable_and_resumes(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b", "c"])
    build("test-counting", items, store_path, workers=0, config={"dim": 3})
    old = packed_arrays(FeatureStore(store_path), "test-counting")
    bug = tmp_path / "bug_c.bin"
    bug.write_bytes(b"x" * 120)
    broken = [*items[:2], MediaItem(video_id="c", path=str(bug))]
    with pytest.raises(RuntimeError, match="simulated bug"):
        build("test-counting", broken, store_path, workers=0, config={"dim": 5}, overwrite=True,
              videos_per_task=1)
    fs = FeatureStore(store_path)
    assert fs.provenance("test-counting")["config"]["dim"] == 3
    assert_same(packed_arrays(fs, "test-counting"), old)
    report = build("test-counting", items, store_path, workers=0, config={"dim": 5}, overwrite=True)
    assert report.written == ["c"]  # a and b were kept from the interrupted rebuild
    assert sorted(report.skipped) == ["a", "b"]
    assert fs.provenance("test-counting")["config"]["dim"] == 5
    assert fs.load("test-counting").values.shape[1] == 5
    assert len(list((store_path / "test-counting" / "_log").glob("g*"))) == 1


# ---- old stores ------------------------------------------------------------------------------------
def write_format1_store(path: Path, name: str = "feat") -> dict[str, FeatureArray]:
    """A store as the per-video layout wrote it (layout 1), with an incomplete entry and a failure."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.update_attributes({"affectcache": {"layout": 1, "created": "then"}})
    group = root.create_group(name, attributes={"affectcache": prov()})
    written = {vid: frames(vid, n=n, seed=n) for vid, n in (("a", 3), ("b", 5), ("c", 2))}
    for vid, feats in written.items():
        entry = group.create_group(vid, attributes={"complete": False})
        for key, arr in feats.row_arrays().items():
            entry.create_array(key, data=arr)
        entry.update_attributes({"n_rows": feats.n_rows, "source": {"path": f"/{vid}.mp4", "size": 1},
                                 "attrs": dict(feats.attrs), "written": "then", "complete": True})
    partial = group.create_group("crashed", attributes={"complete": False})
    partial.create_array("values", data=np.zeros((2, 3), np.float32))
    root.create_group(f"_affectcache/failures/{name}", attributes={
        "failures": {"bad": {"error": "BadMediaError", "message": "m", "time": "t"}}})
    return written


def test_an_old_store_is_refused_then_upgraded_in_place(store_path: Path) -> None:
    written = write_format1_store(store_path)
    fs = FeatureStore(store_path)
    for call in (lambda: fs.videos("feat"), lambda: fs.read("feat", "a"), lambda: fs.load("feat"),
                 lambda: fs.init_modality("feat", prov())):
        with pytest.raises(OldLayoutError, match="affectcache store upgrade"):
            call()
    result = CliRunner().invoke(app, ["status", "-s", str(store_path)])
    assert result.exit_code == 2
    assert "store upgrade" in result.output
    result = CliRunner().invoke(app, ["store", "upgrade", "-s", str(store_path)])
    assert result.exit_code == 0, result.output
    assert "3 entries converted, 1 incomplete" in result.output
    fs = FeatureStore(store_path)
    assert fs.videos("feat") == ["a", "b", "c"]
    for vid, feats in written.items():
        assert fs.read("feat", vid).allclose(feats, rtol=0, atol=0)
    assert fs.entry_states("feat")["a"].source == {"path": "/a.mp4", "size": 1}
    assert set(fs.failures("feat")) == {"bad"}
    assert zarr.open_group(str(store_path), mode="r").attrs["affectcache"]["layout"] == 2
    assert sorted(p.name for p in (store_path / "feat").iterdir() if p.is_dir()) == ["_log", "fragments"]
    again = CliRunner().invoke(app, ["store", "upgrade", "-s", str(store_path)])
    assert "nothing to upgrade" in again.output


def test_an_old_modality_can_also_be_rebuilt_from_its_media(tmp_path: Path, store_path: Path) -> None:
    write_format1_store(store_path, "test-counting")
    items = make_items(tmp_path, ["a", "b"])
    with pytest.raises(OldLayoutError):
        build("test-counting", items, store_path, workers=0)
    report = build("test-counting", items, store_path, workers=0, overwrite=True)
    assert sorted(report.written) == ["a", "b"]
    assert FeatureStore(store_path).videos("test-counting") == ["a", "b"]
    assert sorted(p.name for p in (store_path / "test-counting").iterdir() if p.is_dir()) == [
        "_log", "fragments"]


def test_an_interrupted_upgrade_resumes(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from affectcache.store.format import upgrade

    written = write_format1_store(store_path)
    real = upgrade.write_fragment
    calls = {"n": 0}

    def crash_after_one(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(upgrade, "write_fragment", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        upgrade.upgrade_store(FeatureStore(store_path), batch_mb=1e-9)  # one entry per batch
    with pytest.raises(OldLayoutError):
        FeatureStore(store_path).videos("feat")  # still refused, never half-read
    monkeypatch.setattr(upgrade, "write_fragment", real)
    reports = upgrade.upgrade_store(FeatureStore(store_path), batch_mb=1e-9)
    assert reports[0].converted == 2  # the first entry was already committed
    fs = FeatureStore(store_path)
    for vid, feats in written.items():
        assert fs.read("feat", vid).allclose(feats, rtol=0, atol=0)


# ---- crashes and concurrent processes --------------------------------------------------------------
KILL_IN_WRITE = """
import os, sys, time
import tests.helpers
from affectcache.store import kv
from affectcache.store.runner import build
from affectcache.store.manifest import load_manifest
real = kv.LocalKeys.put_many
count = {"n": 0}
def half_then_hang(self, items):
    count["n"] += 1
    items = list(items)
    if count["n"] == 4:  # the 4th fragment: half its files, then wait to be killed
        real(self, items[: len(items) // 2])
        open(sys.argv[3], "w").close()
        time.sleep(600)
    real(self, items)
kv.LocalKeys.put_many = half_then_hang
build("test-counting", load_manifest(sys.argv[1]), sys.argv[2], workers=0, videos_per_task=1, compaction=None)
"""

KILL_IN_COMPACTION = """
import sys, time
import tests.helpers
from affectcache.store.format import compaction
from affectcache.store.format.compaction import CompactionPolicy, compact
from affectcache.store.zarr_store import FeatureStore
real = compaction.write_columns
count = {"n": 0}
def slow(*args, **kwargs):
    count["n"] += 1
    if count["n"] == 2:  # after one compacted fragment was committed
        open(sys.argv[2], "w").close()
        time.sleep(600)
    return real(*args, **kwargs)
compaction.write_columns = slow
compact(FeatureStore(sys.argv[1]), "test-counting", CompactionPolicy(target_fragment_mb=1e-9))
"""


def _run_until_marker(script: str, args: list[str], marker: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args, str(marker)], env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the process under test never reached the point to kill it at")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_kill_9_during_a_fragment_write_then_rerun_is_identical(tmp_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i}" for i in range(8)])
    manifest = write_manifest(items, tmp_path / "m.jsonl")
    killed = tmp_path / "killed.zarr"
    _run_until_marker(KILL_IN_WRITE, [str(manifest), str(killed)], tmp_path / "marker")
    fs = FeatureStore(killed)
    assert 1 <= len(fs.videos("test-counting")) < 8
    policy = CompactionPolicy(orphan_age_s=0, retain_s=0, min_small_fragments=1)
    report = build("test-counting", items, killed, workers=0, compaction=policy)
    assert sorted(report.written + report.skipped) == [it.video_id for it in items]
    clean = tmp_path / "clean.zarr"
    build("test-counting", items, clean, workers=0)
    assert_same(packed_arrays(FeatureStore(killed), "test-counting"), packed_arrays(FeatureStore(clean),
                                                                                   "test-counting"))
    # The half-written fragment was never committed, and compaction deleted it.
    assert live_fragments(killed, "test-counting") == sorted(FeatureStore(killed).catalog(
        "test-counting").live_rows())


@pytest.mark.slow
def test_kill_9_during_compaction_then_rerun_is_identical(tmp_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i}" for i in range(6)])
    store = tmp_path / "s.zarr"
    build("test-counting", items, store, workers=0, videos_per_task=1, compaction=None)
    before = packed_arrays(FeatureStore(store), "test-counting")
    _run_until_marker(KILL_IN_COMPACTION, [str(store)], tmp_path / "marker")
    fs = FeatureStore(store)
    assert_same(packed_arrays(fs, "test-counting"), before)  # mid-compaction: same data
    compact(fs, "test-counting", CompactionPolicy(orphan_age_s=0, retain_s=0))
    assert_same(packed_arrays(FeatureStore(store), "test-counting"), before)
    assert len(live_fragments(store, "test-counting")) == 1


TWO_BUILDERS = """
import sys
import tests.helpers
from affectcache.store.runner import build
from affectcache.store.manifest import load_manifest
build(sys.argv[1], load_manifest(sys.argv[2]), sys.argv[3], workers=0, videos_per_task=1,
      config={"sleep_s": 0.05} if sys.argv[1] == "test-counting" else None)
"""


@pytest.mark.slow
def test_two_processes_build_different_modalities_into_one_store(media_dir: Path, tmp_path: Path) -> None:
    items = [MediaItem(video_id=f"v{i}", path=str(media_dir / name))
             for i, name in enumerate(["a.mp4", "b.mp4"] * 3)]
    manifest = write_manifest(items, tmp_path / "m.jsonl")
    store = tmp_path / "shared.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", TWO_BUILDERS, name, str(manifest), str(store)], env=env,
                              cwd=REPO_ROOT) for name in ("test-counting", "test-audio-level")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    fs = FeatureStore(store)
    for name in ("test-counting", "test-audio-level"):
        assert fs.videos(name) == [it.video_id for it in items]
        alone = tmp_path / f"{name}.zarr"
        build(name, items, alone, workers=0)
        assert store_snapshot(fs, name).keys() == store_snapshot(FeatureStore(alone), name).keys()
        assert_same(packed_arrays(fs, name), packed_arrays(FeatureStore(alone), name))


def test_store_compact_command(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i}" for i in range(5)])
    build("test-counting", items, store_path, workers=0, videos_per_task=1, compaction=None)
    before = packed_arrays(FeatureStore(store_path), "test-counting")
    assert len(live_fragments(store_path, "test-counting")) == 5
    result = CliRunner().invoke(app, ["store", "compact", "-s", str(store_path)])
    assert result.exit_code == 0, result.output
    assert "5 -> 1 fragments, 5 entries moved, 0 fragments deleted, 5 retained" in result.output
    assert len(live_fragments(store_path, "test-counting")) == 6
    kept = CliRunner().invoke(app, ["store", "compact", "-s", str(store_path), "--vacuum"])
    assert "test-counting: 0 fragments deleted, 5 retained for readers" in kept.output
    vacuumed = CliRunner().invoke(app, ["store", "compact", "-s", str(store_path), "--vacuum",
                                        "--retain-s", "0"])
    assert vacuumed.exit_code == 0, vacuumed.output
    assert "test-counting: 5 fragments deleted, 0 retained for readers" in vacuumed.output
    assert len(live_fragments(store_path, "test-counting")) == 1
    assert_same(packed_arrays(FeatureStore(store_path), "test-counting"), before)
    refused = CliRunner().invoke(app, ["store", "compact", "-s", str(store_path), "nope"])
    assert refused.exit_code == 2
    assert "'nope' is not in the store" in refused.output
