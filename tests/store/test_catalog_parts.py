"""Failure records in immutable checkpoint parts (replay, crashes between parts, format-1 checkpoints);
deferred deletion of retired fragments (vacuum)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from affectcache.store.errors import StoreError
from affectcache.store.format import catalog as catalog_module
from affectcache.store.format import compaction as compaction_module
from affectcache.store.format.catalog import Catalog, _pack_failures
from affectcache.store.format.compaction import CompactionPolicy, compact, vacuum
from affectcache.store.format.fragments import FRAGMENTS_GROUP
from affectcache.store.zarr_store import FeatureStore
from tests.store.test_zarr_store import frames, prov

if TYPE_CHECKING:
    from pathlib import Path


def _log_dir(store_path: Path, name: str) -> Path:
    return next(p for p in (store_path / name / "_log").iterdir() if p.is_dir())


def _nodes(log: Path, kind: str) -> list[int]:
    return sorted(int(p.name[1:]) for p in log.iterdir() if p.is_dir() and p.name[0] == kind)


def _newest_checkpoint(log: Path) -> dict[str, Any]:
    raw = json.loads((log / f"c{_nodes(log, 'c')[-1]:010d}" / "zarr.json").read_text())
    return dict(raw["attributes"])


def _record(i: int, message: str = "unusable") -> dict[str, Any]:
    return {"error": "BadMediaError", "message": f"{message} {i}", "time": "t"}


def test_failure_parts_replay_equals_the_records_and_the_base_is_not_rewritten(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 4)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    expected = {f"old{i:04d}": _record(i) for i in range(600)}
    fs.record_failures("feat", expected)  # >= CHECKPOINT_ENTRIES records: checkpointed at once
    log = _log_dir(store_path, "feat")
    base = log / f"f{_nodes(log, 'f')[0]:010d}" / "zarr.json"
    base_stat = base.stat()
    rng = np.random.default_rng(0)
    for step in range(120):
        action = int(rng.integers(4))
        if action == 0:  # new failures
            new = {f"new{step:03d}_{j}": _record(j) for j in range(int(rng.integers(1, 4)))}
            fs.record_failures("feat", new)
            expected.update(new)
        elif action == 1:  # a failed item is retried and fails differently
            vid = sorted(expected)[int(rng.integers(len(expected)))]
            fs.record_failures("feat", {vid: _record(step, "again")})
            expected[vid] = _record(step, "again")
        elif action == 2:  # resolved
            vid = sorted(expected)[int(rng.integers(len(expected)))]
            fs.record_failures("feat", {}, resolved=[vid])
            expected.pop(vid)
        else:  # a failed item now writes its entry: its failure record goes
            vid = sorted(expected)[int(rng.integers(len(expected)))]
            fs.write("feat", frames(vid, n=2))
            expected.pop(vid)
        if step % 9 == 0:
            assert FeatureStore(store_path, read_only=True).failures("feat") == expected
    assert FeatureStore(store_path, read_only=True).failures("feat") == expected
    assert FeatureStore(store_path).failures("feat") == expected  # the committer's cached state too
    refs = _newest_checkpoint(log)["affectcache_checkpoint_2"]["failure_parts"]
    assert 2 <= len(refs) <= 8, refs  # few parts, however many checkpoints were written
    assert refs[0][0] == int(base.parent.name[1:])
    after = base.stat()
    assert (after.st_ino, after.st_mtime_ns) == (base_stat.st_ino, base_stat.st_mtime_ns)  # never rewritten
    on_disk = _nodes(log, "f")
    assert len(on_disk) <= len(refs) + 8, on_disk  # parts of trimmed checkpoints are deleted


KILL_BETWEEN_PARTS = """
import os, sys
from affectcache.store.format import catalog
from affectcache.store.kv import LocalKeys
from affectcache.store.zarr_store import FeatureStore
catalog.CHECKPOINT_EVERY = 4
real = LocalKeys.put_new
def put_new(self, key, data):
    if key.rsplit("/", 2)[-2].startswith("c"):
        os._exit(9)  # the part is written, the checkpoint that references it is not
    return real(self, key, data)
LocalKeys.put_new = put_new
fs = FeatureStore(sys.argv[1])
for i in range(8):
    print(i, flush=True)  # the commit that dies has written its record: it lands
    fs.record_failures("feat", {f"late{i}": {"error": "E", "message": "m", "time": "t"}})
"""


def test_kill_9_between_a_failure_part_and_its_checkpoint_loses_nothing(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 4)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.record_failures("feat", {"a": _record(0)})
    fs.record_failures("feat", {"b": _record(1)})
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_PARTS, str(store_path)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    landed = {"a", "b"} | {f"late{i}" for i in proc.stdout.split()}
    log = _log_dir(store_path, "feat")
    killed = _nodes(log, "v")[-1]
    assert killed in _nodes(log, "f")
    assert killed not in _nodes(log, "c")
    fresh = FeatureStore(store_path)
    assert set(fresh.failures("feat")) == landed
    for i in range(12):  # later checkpoints write their own parts; the orphan one is trimmed
        fresh.record_failures("feat", {f"more{i}": _record(i)})
    assert set(FeatureStore(store_path, read_only=True).failures("feat")) == (
        landed | {f"more{i}" for i in range(12)})
    refs = [v for v, _ in _newest_checkpoint(log)["affectcache_checkpoint_2"]["failure_parts"]]
    assert killed not in refs
    assert killed not in _nodes(log, "f")


def test_a_format_1_checkpoint_reads_and_is_written_out_as_parts(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 4)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    for vid in ("a", "b", "c"):
        fs.write("feat", frames(vid, n=3))
    fs.record_failures("feat", {"bad": _record(0), "worse": {"error": "E", "message": "m", "time": "t",
                                                              "detail": [1, 2]}})
    fs.write("feat", frames("d", n=3))  # the 5th commit: a checkpoint
    expected = FeatureStore(store_path, read_only=True).failures("feat")
    log = _log_dir(store_path, "feat")
    # Rewrite the newest checkpoint as the previous code wrote it: records inline, the old attribute.
    newest = _nodes(log, "c")[-1]
    node = log / f"c{newest:010d}" / "zarr.json"
    doc = json.loads(node.read_text())
    data = doc["attributes"].pop("affectcache_checkpoint_2")
    assert list(doc["attributes"]) == []  # code that knows only format 1 finds no checkpoint to misread
    data.pop("failure_parts")
    data.pop("format")
    state = FeatureStore(store_path, read_only=True).catalog("feat")
    data["failures"] = _pack_failures(state.failures)
    doc["attributes"]["affectcache_checkpoint"] = data
    node.write_text(json.dumps(doc))
    for v in _nodes(log, "v"):
        if v <= newest:
            (log / f"v{v:010d}" / "zarr.json").unlink()
            (log / f"v{v:010d}").rmdir()
    for f in _nodes(log, "f"):
        (log / f"f{f:010d}" / "zarr.json").unlink()
        (log / f"f{f:010d}").rmdir()
    old = FeatureStore(store_path, read_only=True)
    assert old.failures("feat") == expected
    assert old.videos("feat") == ["a", "b", "c", "d"]
    writer = FeatureStore(store_path)
    for i in range(5):  # the next checkpoint writes the inline records out as a part
        writer.record_failures("feat", {f"n{i}": _record(i)})
    expected.update({f"n{i}": _record(i) for i in range(5)})
    assert _nodes(log, "c")[-1] > newest
    assert _nodes(log, "f")
    assert "affectcache_checkpoint_2" in _newest_checkpoint(log)
    assert FeatureStore(store_path, read_only=True).failures("feat") == expected


def test_a_checkpoint_of_a_newer_format_is_refused(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    fs.record_failures("feat", {f"bad{i}": _record(i) for i in range(300)})  # checkpointed at once
    log = _log_dir(store_path, "feat")
    node = log / f"c{_nodes(log, 'c')[-1]:010d}" / "zarr.json"
    doc = json.loads(node.read_text())
    doc["attributes"]["affectcache_checkpoint_2"]["format"] = 99
    node.write_text(json.dumps(doc))
    shutil.rmtree(log / "v0000000000")  # as after a trim: readers start from the checkpoint
    with pytest.raises(StoreError, match="newer than this affectcache reads"):
        FeatureStore(store_path, read_only=True).failures("feat")


# ---- deferred deletion (vacuum) --------------------------------------------------------------------
def _fragment_dirs(store_path: Path, name: str) -> set[str]:
    return {p.name for p in (store_path / name / FRAGMENTS_GROUP).iterdir() if p.is_dir()}


def test_vacuum_never_deletes_a_live_or_retained_fragment(store_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 4)
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    for pair in (("a", "b"), ("c", "d"), ("e", "f")):
        fs.commit("feat", [fs.write_fragment("feat", [(frames(v, n=3), None) for v in pair])])
    fs.write("feat", frames("a", n=2, seed=5))  # a's old fragment still holds b: live
    fs.delete("feat", ["c", "d"])  # their fragment is retired
    before = packed(fs)
    live = set(fs.catalog("feat").live_rows())
    (retired,) = fs.catalog("feat").retired()
    clock = [1000.0]
    monkeypatch.setattr(compaction_module.time, "time", lambda: clock[0])
    policy = CompactionPolicy(retain_s=100)
    assert vacuum(fs, "feat", policy) == (0, 1)  # found unreferenced now: retained
    assert FeatureStore(store_path, read_only=True).catalog("feat").retired_at == {retired: 1000.0}
    clock[0] = 1050.0
    fs.delete("feat", ["e", "f"])  # a second fragment retires later, on its own clock
    (later,) = set(fs.catalog("feat").retired()) - {retired}
    assert vacuum(fs, "feat", policy) == (0, 2)
    clock[0] = 1100.0
    assert vacuum(fs, "feat", policy) == (1, 1)  # only the first one's retention has passed
    assert _fragment_dirs(store_path, "feat") == live | {later}
    assert retired not in _fragment_dirs(store_path, "feat")
    assert later in _fragment_dirs(store_path, "feat")
    after = packed(FeatureStore(store_path, read_only=True))
    assert after["ids"] == [v for v in before["ids"] if v not in ("e", "f")]
    clock[0] = 1150.0
    assert vacuum(fs, "feat", policy) == (1, 0)
    assert _fragment_dirs(store_path, "feat") == set(fs.catalog("feat").live_rows())
    fresh = FeatureStore(store_path, read_only=True).catalog("feat")
    assert fresh.retired() == []
    assert fresh.retired_at == {}


def test_a_crash_between_deleting_and_purging_loses_nothing(store_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    for v in ("a", "b", "c"):
        fs.write("feat", frames(v, n=3))
    fs.write("feat", frames("b", n=4, seed=2))  # b's first fragment retires
    before = packed(fs)
    real = Catalog.commit

    def crash_at_purge(self: Catalog, record: dict[str, Any], **kw: Any) -> Any:
        if record.get("op") == "purge":
            raise KeyboardInterrupt  # as if killed after the deletes, before the purge record
        return real(self, record, **kw)

    monkeypatch.setattr(Catalog, "commit", crash_at_purge)
    with pytest.raises(KeyboardInterrupt):
        vacuum(fs, "feat", CompactionPolicy(retain_s=0))
    monkeypatch.setattr(Catalog, "commit", real)
    reader = FeatureStore(store_path, read_only=True)
    assert len(reader.catalog("feat").retired()) == 1  # deleted, still listed: never referenced
    assert packed(reader) == before
    assert vacuum(FeatureStore(store_path), "feat", CompactionPolicy(retain_s=0)) == (1, 0)
    assert FeatureStore(store_path, read_only=True).catalog("feat").retired() == []
    assert packed(FeatureStore(store_path, read_only=True)) == before


def packed(fs: FeatureStore) -> dict[str, Any]:
    data = fs.load("feat")
    return {"ids": list(data.video_ids), "values": data.values.tolist(), "offsets": data.offsets.tolist()}


def test_a_fresh_reader_starts_from_the_checkpoint_not_the_records_before_it(
        store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FeatureStore(store_path)
    fs.init_modality("feat", prov())
    for v in "abcdefgh":  # eight commits, no periodic checkpoint yet
        fs.write("feat", frames(v, n=2))
    compact(fs, "feat", CompactionPolicy())  # ends with a checkpoint (the vacuum's retire record)
    log = _log_dir(store_path, "feat")
    newest = _nodes(log, "c")[-1]
    assert [v for v in _nodes(log, "v") if v < newest]  # the older records are still there
    read: list[tuple[str, int]] = []
    real = Catalog._read_node

    def spy(self: Catalog, kind: str, version: int, *attrs: str) -> Any:
        read.append((kind, version))
        return real(self, kind, version, *attrs)

    monkeypatch.setattr(Catalog, "_read_node", spy)
    assert FeatureStore(store_path, read_only=True).videos("feat") == list("abcdefgh")
    assert read == [("c", newest)]
