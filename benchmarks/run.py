"""affectcache benchmarks: ratios against a baseline measured in the same process.

These machines are noisy, so every number that matters is a ratio of two timings taken back to back
(best of ``--repeat`` runs each), never an absolute threshold. Results print as a table and are written to
``bench_out/results.json``.

Measured:
  1. mfcc through the full runner (decode + extract + store write, in-process and on a local Dask cluster)
     vs the bare MFCC function over the same already-decoded audio;
  2. store write vs ``np.save`` of the same arrays;
  3. epoch-style read of a whole modality from the store vs the same arrays held in memory
     (and vs ``np.load`` of the ``.npy`` files);
  4. peak RSS of mfcc extraction on a 10-minute vs a 1-minute clip (separate processes);
  5. ``affectcache --help`` wall time vs a bare ``python -c pass``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("affectcache.benchmarks")


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_mfcc_runner(out: Path, repeat: int) -> list[dict[str, Any]]:
    from affectcache.extractors.media import decode_audio
    from affectcache.extractors.mfcc import MFCCConfig, MFCCExtractor
    from affectcache.extractors.records import MediaItem
    from affectcache.extractors.synthetic import generate_demo_corpus
    from affectcache.store.build import build
    from affectcache.store.manifest import Manifest

    clips = generate_demo_corpus(out / "media")
    items = [MediaItem(video_id=c.video_id, path=str(c.path)) for c in clips]
    audio_s = sum(c.duration_s for c in clips)
    cfg = MFCCConfig()
    extractor = MFCCExtractor(cfg)
    waves = [decode_audio(it.path, sample_rate=cfg.sample_rate) for it in items]
    extractor.compute(waves)  # warm: load filters, first-call torch overheads
    bare = best_of(lambda: extractor.compute(waves), repeat)
    decode = best_of(lambda: [decode_audio(it.path, sample_rate=cfg.sample_rate) for it in items], repeat)

    def runner(workers: int) -> None:
        target = out / f"runner_{workers}.zarr"
        shutil.rmtree(target, ignore_errors=True)
        build("mfcc", Manifest(items=tuple(items)), target, config=cfg, workers=workers)

    in_process = best_of(lambda: runner(0), repeat)
    dask = best_of(lambda: runner(2), max(1, repeat - 1))
    return [
        {"benchmark": "mfcc bare compute (baseline)", "seconds": bare, "ratio": 1.0,
         "note": f"{len(items)} clips, {audio_s:.0f} s audio; {audio_s / bare:.0f}x real time"},
        {"benchmark": "mfcc audio decode+resample", "seconds": decode, "ratio": decode / bare, "note": ""},
        {"benchmark": "mfcc full runner, in-process", "seconds": in_process, "ratio": in_process / bare,
         "note": f"decode+extract+write; {audio_s / in_process:.0f}x real time"},
        {"benchmark": "mfcc full runner, local Dask (2 workers)", "seconds": dask, "ratio": dask / bare,
         "note": "includes cluster start-up and worker imports"},
    ]


def _bench_arrays(n_videos: int, rows: int, dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"v{i:03d}": rng.standard_normal((rows + 37 * i, dim)).astype(np.float16)
            for i in range(n_videos)}


def bench_store_io(out: Path, repeat: int) -> list[dict[str, Any]]:
    from affectcache.extractors.records import FeatureArray
    from affectcache.store.zarr_store import FeatureStore

    arrays = _bench_arrays(32, 1500, 768)
    total_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    feats = [FeatureArray(video_id=vid, kind="frame", values=a, frame=np.arange(a.shape[0]),
                          time_s=np.arange(a.shape[0]) / 25.0) for vid, a in arrays.items()]
    prov = {"extractor": "bench", "version": "1", "modality_kind": "frame", "config": {},
            "config_fingerprint": "0" * 64, "upstream": {}, "model": {"id": None}, "libraries": {},
            "created": "now"}
    npy_dir = out / "npy"

    def write_npy() -> None:
        shutil.rmtree(npy_dir, ignore_errors=True)
        npy_dir.mkdir(parents=True)
        for f in feats:
            np.save(npy_dir / f"{f.video_id}.values.npy", f.values)
            np.save(npy_dir / f"{f.video_id}.frame.npy", f.frame)
            np.save(npy_dir / f"{f.video_id}.time_s.npy", f.time_s)

    store_path = out / "io.zarr"

    def write_store() -> None:
        shutil.rmtree(store_path, ignore_errors=True)
        fs = FeatureStore(store_path)
        fs.init_modality("bench", prov)
        for f in feats:
            fs.write("bench", f)

    t_npy = best_of(write_npy, repeat)
    t_store = best_of(write_store, repeat)
    fs = FeatureStore(store_path, read_only=True)

    def epoch(load: Callable[[str], np.ndarray]) -> float:
        # A training-style pass: every video's rows, reduced so the data is really touched.
        return float(sum(float(load(vid).astype(np.float32).mean()) for vid in arrays))

    t_mem = best_of(lambda: epoch(arrays.__getitem__), repeat)
    t_read = best_of(lambda: epoch(lambda vid: fs.read("bench", vid).values), repeat)
    t_many = best_of(lambda: [f.values.astype(np.float32).mean() for f in fs.read_many("bench")], repeat)
    t_load = best_of(lambda: epoch(lambda vid: np.load(npy_dir / f"{vid}.values.npy")), repeat)
    ds = fs.open_dataset("bench")
    t_lazy = best_of(lambda: float(ds["values"].astype(np.float32).mean().compute()), repeat)
    return [
        {"benchmark": "np.save of the arrays (baseline)", "seconds": t_npy, "ratio": 1.0,
         "note": f"32 videos, {total_mb:.1f} MB float16"},
        {"benchmark": "store write (FeatureStore.write)", "seconds": t_store, "ratio": t_store / t_npy,
         "note": f"{total_mb / t_store:.0f} MB/s"},
        {"benchmark": "epoch over arrays in memory (baseline)", "seconds": t_mem, "ratio": 1.0, "note": ""},
        {"benchmark": "epoch reading the store per video", "seconds": t_read, "ratio": t_read / t_mem,
         "note": f"{total_mb / t_read:.0f} MB/s"},
        {"benchmark": "epoch via read_many", "seconds": t_many, "ratio": t_many / t_mem, "note": ""},
        {"benchmark": "epoch via open_dataset (dask)", "seconds": t_lazy, "ratio": t_lazy / t_mem,
         "note": "whole modality as one lazy array"},
        {"benchmark": "epoch via np.load of .npy files", "seconds": t_load, "ratio": t_load / t_mem,
         "note": "for scale"},
    ]


RSS_SCRIPT = """
import resource, sys
from affectcache.extractors.mfcc import MFCCExtractor
from affectcache.extractors.records import MediaItem
feats = MFCCExtractor().extract(MediaItem(video_id="x", path=sys.argv[1]))
print(feats.n_rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_rss(out: Path) -> list[dict[str, Any]]:
    from affectcache.extractors.synthetic import write_clip

    rows = []
    peaks = {}
    for minutes in (1, 10):
        path = out / f"long_{minutes}min.mp4"
        if not path.exists():
            write_clip(path, duration_s=60.0 * minutes, fps=5.0, size=(64, 48),
                       frame_fn=lambda i, t: np.full((48, 64, 3), int(t * 10) % 255, np.uint8),
                       audio_fn=lambda t: 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate=16000)
        proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], capture_output=True, text=True,
                              check=True)
        n_rows, kb = proc.stdout.split()
        peaks[minutes] = int(kb) / 1024
        rows.append({"benchmark": f"mfcc peak RSS, {minutes}-min clip", "seconds": float("nan"),
                     "ratio": peaks[minutes] / peaks[1], "note": f"{peaks[minutes]:.0f} MiB, {n_rows} rows"})
    return rows


def bench_cli_help(repeat: int) -> list[dict[str, Any]]:
    exe = Path(sys.executable).parent / "affectcache"
    bare = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat)
    helped = best_of(lambda: subprocess.run([str(exe), "--help"], check=True, capture_output=True), repeat)
    return [{"benchmark": "python -c pass (baseline)", "seconds": bare, "ratio": 1.0, "note": ""},
            {"benchmark": "affectcache --help", "seconds": helped, "ratio": helped / bare, "note": ""}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true", help="skip the 10-minute clip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    results += bench_cli_help(args.repeat)
    results += bench_mfcc_runner(args.out, args.repeat)
    results += bench_store_io(args.out, args.repeat)
    if not args.skip_rss:
        results += bench_rss(args.out)
    width = max(len(r["benchmark"]) for r in results)
    lines = [f"{'benchmark':<{width}}  {'seconds':>9}  {'ratio':>8}  note", "-" * (width + 40)]
    for r in results:
        secs = "" if r["seconds"] != r["seconds"] else f"{r['seconds']:.3f}"
        lines.append(f"{r['benchmark']:<{width}}  {secs:>9}  {r['ratio']:>8.2f}  {r['note']}")
    sys.stdout.write("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"results": results, "python": sys.version, "driver_peak_rss_kb_at_start": peak_self}, indent=2))


if __name__ == "__main__":
    main()
