"""Store at corpus scale (issue 12): fragments + catalog vs plain numpy files, ratios in one process.

Default sizes are small (``make bench``); ``--scale`` runs the full ones: 20,000 MOSEI-like entries
(1-30 rows x 768 float16) and 600 Aff-Wild2-like videos x 5,000 rows x 256 float16 (~1.5 GB).

The write + compaction row runs the build's default policy, which defers deleting the superseded
fragments to a vacuum after the retention time: the inodes are reported as the build leaves them and
after that vacuum (timed on its own row).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from timing import best_of  # benchmarks/ is on sys.path when run as a script

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

PROV = {"extractor": "bench", "version": "1", "modality_kind": "frame", "config": {},
        "config_fingerprint": "0" * 64, "upstream": {}, "model": {"id": None}, "libraries": {},
        "created": "now"}
PER_TASK = 8  # the runner's default videos per task for large manifests



def _row(name: str, seconds: float, ratio: float, note: str = "") -> dict[str, Any]:
    return {"benchmark": name, "seconds": seconds, "ratio": ratio, "note": note}


def _mosei_like(n: int, seed: int = 0) -> list[Any]:
    from affectcache.extractors.core.records import FeatureArray

    rng = np.random.default_rng(seed)
    out = []
    for i, rows in enumerate(rng.integers(1, 31, n).tolist()):
        frame = np.arange(rows)
        out.append(FeatureArray(video_id=f"utt{i:06d}", kind="frame",
                                values=rng.standard_normal((rows, 768)).astype(np.float16),
                                frame=frame, time_s=frame / 25.0))
    return out


def _source(i: int) -> dict[str, Any]:
    return {"path": f"/corpus/utt{i:06d}.mp4", "size": 1000 + i, "mtime": 1.7e9 + i, "start_s": None,
            "end_s": None}


def _write_through_runner_path(fs: Any, name: str, feats: Sequence[Any]) -> None:
    """What a build does: each task writes one fragment of its items, the driver commits it."""
    for i in range(0, len(feats), PER_TASK):
        chunk = feats[i: i + PER_TASK]
        fs.commit(name, [fs.write_fragment(name, [(f, _source(i + j)) for j, f in enumerate(chunk)])])


def _disk(path: Path) -> tuple[int, int]:
    """(inodes, allocated bytes) under ``path``."""
    inodes, allocated = 1, os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            inodes += 1
            allocated += os.lstat(os.path.join(root, name)).st_blocks * 512
    return inodes, allocated


def _save_npz(folder: Path, feats: Sequence[Any]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in feats:
        np.savez(folder / f"{f.video_id}.npz", values=f.values, frame=f.frame, time_s=f.time_s)


def _save_concat(folder: Path, feats: Sequence[Any]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    np.save(folder / "values.npy", np.concatenate([f.values for f in feats]))
    np.save(folder / "frame.npy", np.concatenate([f.frame for f in feats]))
    np.save(folder / "time_s.npy", np.concatenate([f.time_s for f in feats]))
    np.save(folder / "offsets.npy", np.cumsum([0] + [f.n_rows for f in feats]))


def _load_concat(folder: Path) -> list[np.ndarray]:
    return [np.load(folder / f"{k}.npy") for k in ("values", "frame", "time_s", "offsets")]


def bench_mosei(out: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    from affectcache.store.format.compaction import CompactionPolicy, maybe_compact, vacuum
    from affectcache.store.status import store_status
    from affectcache.store.zarr_store import FeatureStore

    feats = _mosei_like(n)
    mb = sum(f.values.nbytes for f in feats) / 1e6
    rows: list[dict[str, Any]] = []
    npz, concat, store = out / "npz", out / "concat", out / "mosei.zarr"
    started = time.perf_counter()
    _save_npz(npz, feats)
    t_npz = time.perf_counter() - started
    _save_concat(concat, feats)
    shutil.rmtree(store, ignore_errors=True)
    fs = FeatureStore(store)
    fs.init_modality("m", PROV)
    started = time.perf_counter()
    _write_through_runner_path(fs, "m", feats)
    t_write = time.perf_counter() - started
    policy = CompactionPolicy()  # the build's default: superseded fragments retained for an hour
    started = time.perf_counter()
    report = maybe_compact(fs, "m", policy)
    t_compact = time.perf_counter() - started
    retained = report.fragments_retained if report else 0
    rows += [_row(f"{n} MOSEI-like entries: np.savez per entry (baseline)", t_npz, 1.0,
                  f"{mb:.0f} MB float16, 1-30 rows x 768"),
             _row("  write: fragment per task of 8 + driver commit", t_write, t_write / t_npz,
                  f"target <= 3x; {t_write / n * 1e3:.2f} ms/entry"),
             _row("  write + end-of-build compaction", t_write + t_compact, (t_write + t_compact) / t_npz,
                  f"target <= 3x; compaction {t_compact:.1f} s; deletion of the {retained} superseded "
                  "fragments deferred to a vacuum")]
    inodes, _ = _disk(store)
    c_inodes, c_allocated = _disk(concat)
    rows.append(_row("  inodes per 1k entries as the build leaves them", float("nan"), inodes / (n / 1000),
                     f"{inodes} in all, with the {retained} superseded fragments retained for readers"))
    started = time.perf_counter()
    deleted, _ = vacuum(fs, "m", CompactionPolicy(retain_s=0))  # as the vacuum after the retention time
    t_vacuum = time.perf_counter() - started
    rows.append(_row("  vacuum once the retention has passed", t_vacuum, t_vacuum / t_npz,
                     f"{deleted} fragments deleted (not on the build's path)"))
    inodes, allocated = _disk(store)
    rows.append(_row("  inodes per 1k entries after the vacuum", float("nan"), inodes / (n / 1000),
                     f"target <= 20; {inodes} in all; concatenated .npy: {c_inodes}"))
    rows.append(_row("  allocated bytes vs concatenated .npy", float("nan"), allocated / c_allocated,
                     f"target <= 1.3x; {allocated / 1e6:.0f} MB vs {c_allocated / 1e6:.0f} MB"))

    t_np = best_of(lambda: _load_concat(concat), repeat)
    t_load = best_of(lambda: FeatureStore(store, read_only=True).load("m"), repeat)
    rows += [_row("  np.load of the concatenated arrays (baseline)", t_np, 1.0),
             _row("  FeatureStore.load (whole modality)", t_load, t_load / t_np, "target <= 2x")]

    reader = FeatureStore(store, read_only=True)
    ids = [f"utt{i:06d}" for i in np.random.default_rng(1).integers(0, n, 200).tolist()]

    def npz_reads() -> None:
        for vid in ids:
            with np.load(npz / f"{vid}.npz") as z:
                _ = z["values"], z["frame"], z["time_s"]

    t_npz_read = best_of(npz_reads, repeat) / len(ids)
    t_read = best_of(lambda: [reader.read("m", v) for v in ids], repeat) / len(ids)
    rows += [_row("  np.load of one entry's npz (baseline)", t_npz_read, 1.0, "mean of 200 ids"),
             _row("  FeatureStore.read of one entry", t_read, t_read / t_npz_read, "target <= 3x")]

    id_list = out / "ids.json"
    id_list.write_text(json.dumps([f.video_id for f in feats]))

    def json_ids() -> None:
        with open(id_list) as fh:
            json.load(fh)

    t_json = best_of(json_ids, repeat)
    t_videos = best_of(lambda: FeatureStore(store, read_only=True).videos("m"), repeat)
    t_status = best_of(lambda: store_status(FeatureStore(store, read_only=True)), repeat)
    current = {f.video_id: _source(i) for i, f in enumerate(feats)}
    t_plan = best_of(lambda: FeatureStore(store, read_only=True).catalog("m").changed_sources(current),
                     repeat)
    rows += [_row(f"  json.load of a {n}-id list (baseline)", t_json, 1.0),
             _row("  videos() (fresh store object)", t_videos, t_videos / t_json, "target <= 20x"),
             _row("  status (fresh store object)", t_status, t_status / t_json, "target <= 20x"),
             _row("  plan: catalog + source check of every item", t_plan, t_plan / t_json,
                  "target <= 20x; media stat() calls excluded (same for any layout)")]

    t_graph = best_of(lambda: FeatureStore(store, read_only=True).open_dataset("m"), repeat)
    rows.append(_row("  open_dataset graph build", t_graph, t_graph / t_load, "target <= 0.2x of load"))

    rows += _bench_failures(out, n, repeat)
    return rows


def _bench_failures(out: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    from affectcache.store.zarr_store import FeatureStore

    fs = FeatureStore(out / "failures.zarr")
    for name in ("none", "many"):
        fs.init_modality(name, PROV, overwrite=True)
    record = {"error": "BadMediaError", "message": "unusable", "time": "t"}
    fs.record_failures("many", {f"old{i:06d}": record for i in range(n)})
    k = 64  # amortised over several records: a checkpoint is written every 32 commits

    def add(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(k):
                fs.record_failures(name, {f"new{time.perf_counter_ns()}{i}": record})
        return run

    t_none = best_of(add("none"), repeat) / k
    t_many = best_of(add("many"), repeat) / k
    return [_row("  one failure recorded, none present (baseline)", t_none, 1.0, f"mean of {k}"),
            _row(f"  one failure recorded, {n} present", t_many, t_many / t_none, "target <= 2x")]


def bench_growth(out: Path, sizes: Sequence[int], repeat: int) -> list[dict[str, Any]]:
    """Per-entry write and read cost at growing modality sizes (should stay flat)."""
    from affectcache.store.zarr_store import FeatureStore

    rows = []
    feats = _mosei_like(max(sizes), seed=2)
    for n in sizes:
        store = out / f"growth{n}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        fs = FeatureStore(store)
        fs.init_modality("m", PROV)
        started = time.perf_counter()
        _write_through_runner_path(fs, "m", feats[:n])
        per_write = (time.perf_counter() - started) / n
        ids = [f"utt{i:06d}" for i in np.random.default_rng(3).integers(0, n, 200).tolist()]
        reader = FeatureStore(store, read_only=True)
        per_read = best_of(lambda r=reader, i=ids: [r.read("m", v) for v in i], repeat) / len(ids)
        if n == sizes[0]:
            base_write, base_read = per_write, per_read
        rows += [_row(f"growth: write per entry at {n}", per_write, per_write / base_write,
                      f"{per_write * 1e3:.2f} ms"),
                 _row(f"growth: read per entry at {n}", per_read, per_read / base_read,
                      f"{per_read * 1e3:.3f} ms")]
    return rows


RSS_SCRIPT = """
import sys
from affectcache.store.zarr_store import FeatureStore
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))
fs = FeatureStore(sys.argv[1], read_only=True)
fs.videos("m")
before = status("VmRSS:")
packed = fs.load("m")
after = status("VmHWM:")
nbytes = packed.values.nbytes + packed.mask.nbytes + sum(a.nbytes for a in packed.row_arrays.values())
print(before, after, nbytes)
"""


def bench_affwild(out: Path, videos: int, rows_per_video: int, repeat: int) -> list[dict[str, Any]]:
    from affectcache.extractors.core.records import FeatureArray
    from affectcache.store.format.compaction import CompactionPolicy, maybe_compact
    from affectcache.store.zarr_store import FeatureStore

    rng = np.random.default_rng(5)
    store, concat = out / "affwild.zarr", out / "affwild_concat"
    shutil.rmtree(store, ignore_errors=True)
    fs = FeatureStore(store)
    fs.init_modality("m", PROV)
    frame = np.arange(rows_per_video)
    shutil.rmtree(concat, ignore_errors=True)
    concat.mkdir(parents=True)
    total = videos * rows_per_video
    # The baseline's arrays are written as they are produced (no second copy of ~1.5 GB in memory).
    values = np.lib.format.open_memmap(concat / "values.npy", mode="w+", dtype=np.float16, shape=(total, 256))
    np.save(concat / "frame.npy", np.tile(frame, videos))
    np.save(concat / "time_s.npy", np.tile(frame / 30.0, videos))
    np.save(concat / "offsets.npy", np.arange(videos + 1) * rows_per_video)
    for start in range(0, videos, PER_TASK):
        chunk = []
        for i in range(start, min(videos, start + PER_TASK)):
            feats = FeatureArray(video_id=f"vid{i:04d}", kind="frame",
                                 values=rng.standard_normal((rows_per_video, 256)).astype(np.float16),
                                 frame=frame, time_s=frame / 30.0)
            chunk.append((feats, _source(i)))
            values[i * rows_per_video: (i + 1) * rows_per_video] = feats.values
        fs.commit("m", [fs.write_fragment("m", chunk)])
    values.flush()
    del values
    mb = videos * rows_per_video * 256 * 2 / 1e6
    t_np = best_of(lambda: _load_concat(concat), repeat)
    t_load = best_of(lambda: FeatureStore(store, read_only=True).load("m"), repeat)
    fragments = len(fs.catalog("m").live_rows())
    # What a build leaves: the runner compacts at its end when fragments are many and small.
    report = maybe_compact(fs, "m", CompactionPolicy())
    compacted = len(fs.catalog("m").live_rows())
    t_compacted = best_of(lambda: FeatureStore(store, read_only=True).load("m"), repeat)
    proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(store)], capture_output=True, text=True,
                          check=True)
    before_kb, after_kb, nbytes = (int(x) for x in proc.stdout.split())
    grown = (after_kb - before_kb) * 1024
    return [_row(f"Aff-Wild2-like {videos} x {rows_per_video} x 256: np.load concatenated (baseline)", t_np,
                 1.0, f"{mb:.0f} MB float16"),
            _row(f"  FeatureStore.load, as written ({fragments} fragments)", t_load, t_load / t_np,
                 "target <= 1.5x"),
            _row(f"  FeatureStore.load after the build's compaction ({compacted} fragments)", t_compacted,
                 t_compacted / t_np, "target <= 1.5x" + ("" if report else "; the policy did not compact")),
            _row("  peak RSS of load (above RSS before it) / bytes loaded", float("nan"), grown / nbytes,
                 f"target <= 1.3x; {grown / 1e6:.0f} MB for {nbytes / 1e6:.0f} MB")]


def bench_fsspec_requests(n_small: int) -> list[dict[str, Any]]:
    """Requests a whole-modality load makes to an fsspec store, counted by a wrapping filesystem."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from affectcache.store.format.compaction import CompactionPolicy, compact
    from affectcache.store.zarr_store import FeatureStore

    class CountingMemoryFS(MemoryFileSystem):
        protocol = "countmem"
        calls = 0

        def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                     **kwargs: Any) -> Any:
            CountingMemoryFS.calls += 1
            return super().cat_file(path, start=start, end=end, **kwargs)

        def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
            CountingMemoryFS.calls += 1
            return super().ls(path, detail=detail, **kwargs)

    fsspec.register_implementation("countmem", CountingMemoryFS, clobber=True)
    rows = []
    for n, compacted in ((n_small, False), (n_small, True), (4 * n_small, True)):
        url = f"countmem://bench-{n}-{compacted}"
        fs = FeatureStore(url)
        fs.init_modality("m", PROV, overwrite=True)
        _write_through_runner_path(fs, "m", _mosei_like(n, seed=7))
        if compacted:
            compact(fs, "m", CompactionPolicy(orphan_age_s=0))
        fragments = len(fs.catalog("m").live_rows())
        reader = FeatureStore(url, read_only=True)
        CountingMemoryFS.calls = 0
        reader.load("m")
        rows.append(_row(f"fsspec requests per load: {n} entries in {fragments} fragments", float("nan"),
                         CountingMemoryFS.calls / fragments,
                         f"{CountingMemoryFS.calls} requests (ratio: per fragment)"))
    return rows


def bench_store_scale(out: Path, repeat: int, scale: bool) -> list[dict[str, Any]]:
    """All store-at-scale scenarios, small (default) or full size (``scale``)."""
    out = out / "store_scale"
    out.mkdir(parents=True, exist_ok=True)
    n = 20000 if scale else 2000
    rows = bench_mosei(out, n, repeat)
    rows += bench_growth(out, [1000, 5000, 20000] if scale else [250, 1000, 2000], repeat)
    rows += bench_affwild(out, 600 if scale else 40, 5000 if scale else 2000, repeat)
    rows += bench_fsspec_requests(200 if scale else 100)
    shutil.rmtree(out, ignore_errors=True)
    return rows
