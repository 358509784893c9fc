"""The build runner: planning, resume, per-item failures, bugs, executors, upstream chaining."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import tests.helpers  # noqa: F401  (registers the test-only extractors)
from affectcache.extractors import MediaItem
from affectcache.store.errors import LockHeldError, ProvenanceMismatchError, StoreError
from affectcache.store.lock import ModalityLock
from affectcache.store.manifest import write_manifest
from affectcache.store.runner import build, build_many
from affectcache.store.status import store_status
from affectcache.store.zarr_store import FeatureStore
from tests.helpers import make_items, store_snapshot

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_build_writes_everything_then_skips(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b", "c", "d"])
    report = build("test-counting", items, store_path, workers=0)
    assert sorted(report.written) == ["a", "b", "c", "d"]
    assert report.ok
    again = build("test-counting", items, store_path, workers=0)
    assert again.written == []
    assert sorted(again.skipped) == ["a", "b", "c", "d"]
    fs = FeatureStore(store_path)
    prov = fs.provenance("test-counting")
    assert prov["config"]["dim"] == 4
    assert len(prov["config_fingerprint"]) == 64


def test_bad_media_is_isolated_to_its_item(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["good1", "bad_one", "good2", "missing"])
    Path(items[3].path).unlink()
    report = build("test-counting", items, store_path, workers=0, videos_per_task=4)
    assert sorted(report.written) == ["good1", "good2"]
    assert sorted(f.video_id for f in report.failed) == ["bad_one", "missing"]
    assert all(f.error == "BadMediaError" for f in report.failed)
    fs = FeatureStore(store_path)
    assert set(fs.failures("test-counting")) == {"bad_one", "missing"}
    assert "unusable test media" in fs.failures("test-counting")["bad_one"]["message"]
    # Fixing the file and re-running clears its failure record.
    fixed = tmp_path / "fixed.bin"
    fixed.write_bytes(b"y" * 50)
    items[1] = MediaItem(video_id="bad_one", path=str(fixed))
    build("test-counting", items, store_path, workers=0)
    assert set(fs.failures("test-counting")) == {"missing"}


def test_bugs_are_not_swallowed(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["ok1", "bug_here", "ok2"])
    with pytest.raises(RuntimeError, match="simulated bug"):
        build("test-counting", items, store_path, workers=0, videos_per_task=1)
    fs = FeatureStore(store_path)
    assert fs.videos("test-counting") == ["ok1"]  # what was written before the bug stays
    assert fs.failures("test-counting") == {}
    # The lock was released: the next run can proceed.
    with ModalityLock(fs, "test-counting"):
        pass


def test_side_by_side_a_modality_starts_on_the_first_piece_while_its_upstream_does_the_next(
        tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from affectcache.store import runner as build_module

    spans: dict[tuple[str, tuple[str, ...]], tuple[float, float]] = {}
    real = build_module._run_modality

    def timed(extractor: Any, wanted: Any, items: Sequence[MediaItem], *args: Any) -> Any:
        started = time.perf_counter()
        result = real(extractor, wanted, items, *args)
        spans[(extractor.name, tuple(it.video_id for it in items))] = (started, time.perf_counter())
        return result

    monkeypatch.setattr(build_module, "_run_modality", timed)
    items = make_items(tmp_path, ["v1", "v2", "v3", "v4"])
    build_many(["test-counting", "test-derived"], items, store_path, workers=0, modality_threads=2,
               videos_per_task=4, configs={"test-counting": {"sleep_s": 0.2}})
    derived_first = spans[("test-derived", ("v1", "v2"))]
    counting_second = spans[("test-counting", ("v3", "v4"))]
    assert derived_first[0] < counting_second[1]  # downstream piece 1 ran beside upstream piece 2
    apart = tmp_path / "apart.zarr"
    build_many(["test-counting", "test-derived"], items, apart, workers=0, modality_threads=1)
    for vid in ("v1", "v2", "v3", "v4"):
        np.testing.assert_array_equal(FeatureStore(store_path).read("test-derived", vid).values,
                                      FeatureStore(apart).read("test-derived", vid).values)


def test_a_bug_in_a_side_by_side_modality_stops_the_task(media_dir: Path, tmp_path: Path,
                                                          store_path: Path) -> None:
    import shutil

    bug = tmp_path / "bug_here.mp4"
    shutil.copy(media_dir / "a.mp4", bug)
    items = [MediaItem(video_id="a", path=str(media_dir / "a.mp4")), MediaItem(video_id="bug", path=str(bug))]
    with pytest.raises(RuntimeError, match="simulated bug"):
        build_many(["test-counting", "test-audio-level", "test-derived"], items, store_path, workers=0,
                   modality_threads=2, videos_per_task=2)
    fs = FeatureStore(store_path)
    # Jobs already running finished and their entries stay; the buggy item was written nowhere downstream,
    # and the bug is not recorded as bad media.
    assert "a" in fs.videos("test-audio-level")
    assert fs.videos("test-counting") in ([], ["a"])
    assert "bug" not in fs.videos("test-derived")
    assert fs.failures("test-counting") == {}
    for name in ("test-counting", "test-audio-level", "test-derived"):
        with ModalityLock(fs, name):
            pass


def test_changed_config_is_refused_until_overwrite(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b"])
    build("test-counting", items, store_path, workers=0)
    with pytest.raises(ProvenanceMismatchError, match="dim: 4 -> 5"):
        build("test-counting", items, store_path, config={"dim": 5}, workers=0)
    # Runtime-only fields do not count as a change.
    build("test-counting", items, store_path, config={"batch_size": 3, "device": "cpu"}, workers=0)
    report = build("test-counting", items, store_path, config={"dim": 5}, workers=0, overwrite=True)
    assert sorted(report.written) == ["a", "b"]
    assert FeatureStore(store_path).read("test-counting", "a").values.shape[1] == 5


def test_lock_held_refuses_a_second_builder(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a"])
    fs = FeatureStore(store_path)
    with ModalityLock(fs, "test-counting"), pytest.raises(LockHeldError):
        build("test-counting", items, store_path, workers=0)


def test_changed_source_is_redone_and_reported_stale(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b"])
    build("test-counting", items, store_path, workers=0)
    Path(items[0].path).write_bytes(b"z" * 333)
    fs = FeatureStore(store_path)
    from affectcache.store.manifest import Manifest

    status = {s.name: s for s in store_status(fs, Manifest(items=tuple(items), source=None,
                                                           label_columns=()))}
    assert status["test-counting"].stale == {"a": "source media or clip bounds changed"}
    report = build("test-counting", items, store_path, workers=0)
    assert report.written == ["a"]


def test_only_and_redo(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b", "c"])
    report = build("test-counting", items, store_path, workers=0, only=["b"])
    assert report.written == ["b"]
    report = build("test-counting", items, store_path, workers=0, only=["b"], redo=["b"])
    assert report.written == ["b"]
    with pytest.raises(StoreError, match=r"not in the manifest: 'zzz'$"):
        build("test-counting", items, store_path, workers=0, only=["zzz"])
    with pytest.raises(StoreError, match=r"not in the manifest: 'bb' \(did you mean 'b'\?\), 'zzz'$"):
        build("test-counting", items, store_path, workers=0, only=["zzz", "bb"])


def test_hostile_manifest_ids_are_refused_before_writing(tmp_path: Path, store_path: Path) -> None:
    good = make_items(tmp_path, ["a"])[0]
    hostile = MediaItem(video_id="../../etc", path=good.path)
    with pytest.raises(ValueError, match="invalid video id"):
        build("test-counting", [good, hostile], store_path, workers=0)
    assert not store_path.exists() or FeatureStore(store_path).modalities() == []


def test_duplicate_ids_are_refused(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b"])
    with pytest.raises(StoreError, match="'a' appears twice"):
        build("test-counting", [*items, items[0]], store_path, workers=0)


def test_derived_modality_chains_fingerprints_and_goes_stale(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "b"])
    with pytest.raises(StoreError, match="needs modality 'test-counting'"):
        build("test-derived", items, store_path, workers=0)
    build("test-counting", items[:1], store_path, workers=0)
    report = build("test-derived", items, store_path, workers=0)
    assert report.written == ["a"]
    assert [f.error for f in report.failed] == ["MissingUpstreamError"]
    fs = FeatureStore(store_path)
    np.testing.assert_allclose(fs.read("test-derived", "a").values, 2 * fs.read("test-counting", "a").values)
    assert fs.provenance("test-derived")["upstream"] == {
        "test-counting": fs.provenance("test-counting")["config_fingerprint"]}
    build("test-counting", items, store_path, config={"dim": 2}, workers=0, overwrite=True)
    status = {s.name: s for s in store_status(fs)}
    assert set(status["test-derived"].stale) == {"a"}
    assert "upstream test-counting was rebuilt" in status["test-derived"].stale["a"]
    with pytest.raises(ProvenanceMismatchError, match="upstream modality was rebuilt"):
        build("test-derived", items, store_path, workers=0)


def test_thread_pool_and_serial_runs_are_identical(tmp_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i}" for i in range(7)])
    serial = tmp_path / "serial.zarr"
    threaded = tmp_path / "threaded.zarr"
    build("test-counting", items, serial, workers=0)
    with cf.ThreadPoolExecutor(3) as pool:
        build("test-counting", items, threaded, executor=pool, videos_per_task=2)
    a, b = store_snapshot(FeatureStore(serial), "test-counting"), store_snapshot(FeatureStore(threaded),
                                                                               "test-counting")
    assert a.keys() == b.keys()
    for vid in a:
        for key in a[vid]:
            np.testing.assert_array_equal(a[vid][key], b[vid][key])


@pytest.mark.slow
def test_local_dask_cluster_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # workers import tests.helpers by module name
    items = make_items(tmp_path, [f"v{i}" for i in range(6)])
    report = build("test-counting", items, tmp_path / "dask.zarr", workers=2, videos_per_task=2)
    assert sorted(report.written) == [f"v{i}" for i in range(6)]
    build("test-counting", items, tmp_path / "serial.zarr", workers=0)
    a = store_snapshot(FeatureStore(tmp_path / "dask.zarr"), "test-counting")
    b = store_snapshot(FeatureStore(tmp_path / "serial.zarr"), "test-counting")
    for vid in a:
        np.testing.assert_array_equal(a[vid]["values"], b[vid]["values"])


RESUME_SCRIPT = """
import sys
import tests.helpers
from affectcache.store.runner import build, build_many
from affectcache.store.manifest import load_manifest
build("test-counting", load_manifest(sys.argv[1]), sys.argv[2], config={"sleep_s": 0.25}, workers=0,
      videos_per_task=1)
"""


@pytest.mark.slow
def test_resume_after_kill_9_equals_uninterrupted_run(tmp_path: Path) -> None:
    items = make_items(tmp_path, [f"v{i:02d}" for i in range(16)])
    manifest = write_manifest(items, tmp_path / "m.jsonl")
    killed_store = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(manifest), str(killed_store)],
                            env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if (killed_store / "test-counting" / "zarr.json").exists() and len(
                    FeatureStore(killed_store, read_only=True).videos("test-counting")) >= 4:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the build under test never got going")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = FeatureStore(killed_store, read_only=True).videos("test-counting")
    assert 4 <= len(done_before) < 16
    # The lock the killed run left is recovered (same host, dead pid) and the run completes.
    report = build("test-counting", items, killed_store, workers=0)
    assert sorted(report.written + report.skipped) == [it.video_id for it in items]
    assert set(report.skipped) == set(done_before)
    clean_store = tmp_path / "clean.zarr"
    build("test-counting", items, clean_store, workers=0)
    killed = store_snapshot(FeatureStore(killed_store), "test-counting")
    clean = store_snapshot(FeatureStore(clean_store), "test-counting")
    assert killed.keys() == clean.keys()
    for vid in clean:
        for key in clean[vid]:
            np.testing.assert_array_equal(killed[vid][key], clean[vid][key])


def test_build_many_runs_dependents_after_their_upstream(tmp_path: Path, store_path: Path) -> None:
    items = make_items(tmp_path, ["a", "bad_b", "c"])
    reports = build_many(["test-derived", "test-counting"], items, store_path, workers=0,
                         configs={"test-counting": {"dim": 3}})
    derived, counting = reports
    assert sorted(counting.written) == ["a", "c"]
    assert [f.video_id for f in counting.failed] == ["bad_b"]
    assert sorted(derived.written) == ["a", "c"]
    # Not a second failure: the item's failure is counted upstream, with its real cause named here.
    assert derived.failed == []
    assert [(f.video_id, f.error) for f in derived.not_applicable] == [("bad_b", "MissingUpstreamError")]
    assert "test-counting failed: " in derived.not_applicable[0].message
    assert "unusable test media" in derived.not_applicable[0].message
    fs = FeatureStore(store_path)
    np.testing.assert_allclose(fs.read("test-derived", "c").values, 2 * fs.read("test-counting", "c").values)
    # Built together == built one after the other.
    apart = tmp_path / "apart.zarr"
    build("test-counting", items, apart, workers=0, config={"dim": 3})
    build("test-derived", items, apart, workers=0)
    for name in ("test-counting", "test-derived"):
        together, separate = store_snapshot(fs, name), store_snapshot(FeatureStore(apart), name)
        assert together.keys() == separate.keys()
        for vid in together:
            np.testing.assert_array_equal(together[vid]["values"], separate[vid]["values"])


def test_build_many_decodes_audio_once_per_item_for_every_rate(media_dir: Path, store_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from affectcache.extractors.media import audio as media

    passes: list[tuple[str, list[int]]] = []
    real_pass = media._audio_pass

    def counting_pass(src: str, rates: Sequence[int], *args: Any, **kwargs: Any) -> Any:
        passes.append((src, sorted(rates)))
        return real_pass(src, rates, *args, **kwargs)

    monkeypatch.setattr(media, "_audio_pass", counting_pass)
    items = [MediaItem(video_id=n, path=str(media_dir / f"{n}.mp4")) for n in ("a", "b")]
    configs: dict[str, Any] = {"test-audio-level": {"sample_rate": 48000}}
    build_many(["test-audio-level", "mfcc"], items, store_path, workers=0, configs=configs)
    # One decode per item, resampled to both models' rates (mfcc 16 kHz, the level meter 48 kHz).
    assert sorted(passes) == sorted((it.path, [16000, 48000]) for it in items)
    for name in ("mfcc", "test-audio-level"):
        alone = store_path.parent / f"alone-{name}.zarr"
        build(name, items, alone, workers=0, config=configs.get(name))
        for vid in ("a", "b"):
            np.testing.assert_array_equal(FeatureStore(store_path).read(name, vid).values,
                                          FeatureStore(alone).read(name, vid).values)
    # A file is decoded only for the modalities that build it this time: mfcc is complete in "alone".
    passes.clear()
    build_many(["test-audio-level", "mfcc"], items, store_path.parent / "alone-mfcc.zarr", workers=0,
               configs=configs)
    assert sorted(passes) == sorted((it.path, [48000]) for it in items)
