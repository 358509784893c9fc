"""Hyperparameter search benchmark: a 16-trial ``ras-face`` grid on a 2-worker local Dask cluster vs the
same 16 trials one after another in this process (see run.py, or run this file alone).

The data is generated here (no demo media): ``--videos`` planted videos at 25 fps whose ``face-emb`` rows
(10 fps, ``--dim`` values) are a fixed linear map of the (valence, arousal) labels plus noise. The grid is
lr x hidden x dropout x n_layers (2 values each). Both searches write normal run folders; the parallel
one includes the cluster start-up. Target: >= 1.5x faster on 2 cores.

``--gpu`` trains the trials on CUDA (RAS's face settings: 256 hidden, 8 heads, 400-frame windows, more
and longer videos) and reports trials/hour for both; the local workers each offer one ``GPU`` slot, so
``--workers`` trials share the device at once.

    python benchmarks/bench_search.py [--trials 16] [--workers 2] [--epochs 3] [--gpu] [--out bench_out]

Needs only torch, numpy, zarr, dask/distributed and affectcache.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FPS = 25.0
GRID_VALUES = {"lr": [3e-3, 1e-3], "hidden": [16, 32], "dropout": [0.0, 0.1], "n_layers": [1, 2],
               "window": [100, 200]}
GPU_GRID_VALUES = {"lr": [1e-4, 3e-4], "hidden": [128, 256], "dropout": [0.1, 0.2], "n_layers": [3, 5],
                   "window": [400, 200]}


def write_planted_store(root: Path, *, n_videos: int, duration_s: float, dim: int, seed: int = 0,
                        ) -> tuple[Path, Path]:
    """A store with ``labels/valence``, ``labels/arousal`` and a ``face-emb`` frame modality, and its
    manifest (70 % train, 20 % val, rest test)."""
    from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
    from affectcache.extractors.core.records import FeatureArray, MediaItem
    from affectcache.store.manifest import write_manifest
    from affectcache.store.zarr_store import FeatureStore

    store_path, manifest_path = root / "search.zarr", root / "search.jsonl"
    if store_path.exists() and manifest_path.exists():
        return store_path, manifest_path
    shutil.rmtree(store_path, ignore_errors=True)
    fs = FeatureStore(store_path)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(2, dim))
    config = {"dim": dim, "seed": seed}
    fs.init_modality("face-emb", {"extractor": "planted-face", "version": "1", "modality_kind": "frame",
                                  "config": config, "config_fingerprint": stable_hash(config), "upstream": {},
                                  "model": {"id": None, "revision": None, "sha256": None},
                                  "libraries": library_versions(), "created": utc_now()})
    for track in ("valence", "arousal"):
        fs.init_label_track(track, source="planted", description="benchmark")
    items = []
    n = int(duration_s * FPS)
    for i in range(n_videos):
        vid = f"v{i:03d}"
        t = np.arange(n) / FPS
        v = 0.7 * np.sin(2 * np.pi * t / (6.0 + i % 7) + i)
        a = 0.6 * np.cos(2 * np.pi * t / (9.0 - 0.5 * (i % 5)) + 0.3 * i)
        for track, values in (("valence", v), ("arousal", a)):
            fs.write(f"labels/{track}", FeatureArray(video_id=vid, kind="frame", frame=np.arange(n), time_s=t,
                                                     values=values.astype(np.float32)))
        te = np.arange(0, duration_s, 0.1)
        ve = np.interp(te, t, v)
        ae = np.interp(te, t, a)
        emb = np.stack([ve, ae], 1) @ mixing + 0.1 * rng.normal(size=(te.size, dim))
        fs.write("face-emb", FeatureArray(video_id=vid, kind="frame", values=emb.astype(np.float32),
                                          frame=np.arange(te.size), time_s=te))
        split = "train" if i < 0.7 * n_videos else "val" if i < 0.9 * n_videos else "test"
        items.append(MediaItem(video_id=vid, path=str(root / f"{vid}.mp4"), split=split,
                               labels={"fps": FPS, "n_label_rows": n}))
    write_manifest(items, manifest_path)
    return store_path, manifest_path


def _spec(n_trials: int, epochs: int, gpu: bool) -> Any:
    from affectcache.trainers.search.spec import SearchSpec

    values = GPU_GRID_VALUES if gpu else GRID_VALUES
    # 2 values per field: the first log2(n_trials) fields (n_trials rounds up to a power of two, <= 32).
    keys = list(values)[:max(1, int(np.ceil(np.log2(max(n_trials, 2)))))]
    params = {k: values[k] for k in keys}
    base: dict[str, Any] = {"input_modality": "face-emb", "input_columns": None, "n_heads": 8 if gpu else 2,
                            "epochs": epochs, "train_on_filled": True, "bootstrap_resamples": 50,
                            "early_stop_patience": None, "device": "cuda" if gpu else "cpu"}
    base.update({"hop": 150} if gpu else {"hop": 50, "batch_size": 8})
    fixed = ({"lr": 1e-4, "hidden": 256, "dropout": 0.1, "n_layers": 5, "window": 400} if gpu
             else {"lr": 1e-3, "hidden": 32, "dropout": 0.1, "n_layers": 1, "window": 100})
    base.update({k: v for k, v in fixed.items() if k not in params})
    spec = SearchSpec.from_dict({"strategy": "grid", "base": base, "params": params})
    return spec


def bench_search(out: Path, *, n_trials: int = 16, workers: int = 2, epochs: int = 3, gpu: bool = False,
                 ) -> list[dict[str, Any]]:
    """Rows for run.py: the sequential search (baseline) and the parallel one, seconds and trials/hour."""
    import torch

    from affectcache.store.manifest import load_manifest
    from affectcache.trainers.search.run import run_search

    if gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device here")
    root = out / ("search_gpu" if gpu else "search")
    root.mkdir(parents=True, exist_ok=True)
    # CPU trials of a few seconds each: with ~1 s trials a 2-worker cluster's start-up (seconds) and per-task
    # overhead decide the ratio, not the search (measured on an idle machine: 0.95x at 10 videos x 30 s).
    store, manifest_path = write_planted_store(root, n_videos=24 if gpu else 20,
                                               duration_s=90.0 if gpu else 60.0, dim=256 if gpu else 64)
    manifest = load_manifest(manifest_path)
    spec = _spec(n_trials, epochs, gpu)
    timings = {}
    reports = {}
    # "sequential-1": one torch thread, what each cluster worker gets: the per-worker scaling, where
    # "sequential" (all cores to torch) is the user's plain alternative on this machine.
    runs = (("sequential", 0, None), ("parallel", workers, None), ("sequential-1", 0, 1))
    for label, n_workers, threads in runs[: 2 if gpu else 3]:
        folder = root / label
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        reports[label] = run_search("ras-face", spec, str(store), manifest, folder, workers=n_workers,
                                    torch_threads=threads)
        timings[label] = time.perf_counter() - started
    n = len(reports["sequential"].records)
    if any(r.status != "done" for rep in reports.values() for r in rep.records):
        raise SystemExit(f"some trials failed: see {root}/*/search_results.csv")
    # Same trials, same seeds; only the torch thread count differs (float summation order).
    drift = max(abs(a.objective - b.objective) for a, b in zip(reports["sequential"].records,
                                                                reports["parallel"].records, strict=True))
    where = f"{'CUDA ' + torch.cuda.get_device_name() if gpu else 'CPU'}"
    seq, par = timings["sequential"], timings["parallel"]
    one = timings.get("sequential-1", math.nan)
    per_worker = [] if gpu else [
        {"benchmark": f"search: {n} trials one after another, 1 torch thread", "seconds": one,
         "ratio": one / seq, "note": f"what each worker gets; the cluster is {one / par:.2f}x faster"}]
    return [
        {"benchmark": f"search: {n} trials one after another (baseline)", "seconds": seq, "ratio": 1.0,
         "note": f"{where}, in-process, torch threads {torch.get_num_threads()}; "
                 f"{3600 * n / seq:.0f} trials/h"},
        {"benchmark": f"search: {n} trials on a {workers}-worker local cluster", "seconds": par,
         "ratio": par / seq,
         "note": f"{seq / par:.2f}x faster (target >= 1.5x); {3600 * n / par:.0f} trials/h; cluster start "
                 f"included; max |val CCC mean difference| to the sequential run {drift:.1e}"},
        *per_worker,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="trials on CUDA (RAS face sizes); trials/hour")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    rows = bench_search(args.out, n_trials=args.trials, workers=args.workers, epochs=args.epochs,
                        gpu=args.gpu)
    for r in rows:
        sys.stdout.write(f"{r['benchmark']:<48} {r['seconds']:9.1f} s  {r['ratio']:6.2f}  {r['note']}\n")
    (args.out / f"search{'_gpu' if args.gpu else ''}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
