"""Fusion benchmark (a ratio measured in one process; see run.py, or run this file alone).

One RAAV training epoch through :func:`affectcache.trainers.loop.fit` on the ``fusion-windows`` task
(three streams gathered by index from the packed store arrays, the audio stream chunked into window
tokens per batch, a 1-video validation pass, metrics files, last/best checkpoints) vs a bare PyTorch loop
(AdamW, the same model, ``model.loss`` and gradient clipping) over the same batches pre-built as
tensors. CPU: the demo preset's sizes (hidden 32; the loop's overhead is what is measured), CPU seconds
of one intra-op thread (wall time of two threads on a shared machine is noise). ``--gpu`` on
a CUDA machine: the authors' sizes (hidden 256, 1.7 M parameters) on CUDA with bf16 autocast in both,
where a per-step host sync would show.

    python benchmarks/bench_fusion.py [--gpu] [--videos 25] [--frames 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_trainers import _write_store  # benchmarks/ is on sys.path when run as a script
from timing import best_interleaved

logger = logging.getLogger("affectcache.benchmarks")


def _stream_copies(store: Path, ids: list[str], n: int) -> tuple[str, ...]:
    """``face-bench`` and ``n - 1`` copies of it under other names."""
    from affectcache.store.zarr_store import FeatureStore

    fs = FeatureStore(store)
    names = ("face-bench", *(f"stream{i}-bench" for i in range(1, n)))
    for name in names[1:]:
        fs.init_modality(name, fs.provenance("face-bench"))
        for vid in ids:
            fs.write(name, fs.read("face-bench", vid))
    return names


def bench_fusion_epoch(repeat: int, *, gpu: bool = False, n_videos: int = 25, frames: int = 1000,
                       authors_size: bool = False) -> list[dict[str, Any]]:
    import torch

    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.loop import fit, seed_everything
    from affectcache.trainers.models.raav import RAAVConfig, build_raav, raav_config, raav_demo_config
    from affectcache.trainers.va import _split_clocks, split_videos
    from affectcache.trainers.va_tasks import make_task

    on_gpu = gpu and torch.cuda.is_available()
    if gpu and not on_gpu:
        logger.warning("--gpu: no CUDA device; benchmarking the demo sizes on CPU")
    device = "cuda" if on_gpu else "cpu"
    where = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    root = Path(tempfile.mkdtemp(prefix="bench-fusion-"))
    try:
        store, manifest_path = _write_store(root, n_videos, frames, 256)
        base: RAAVConfig = raav_config() if (on_gpu or authors_size) else raav_demo_config()
        # One store modality per stream (copies of the bench input: the work per batch is what matters),
        # so no stream shares another's gather.
        modalities = _stream_copies(store, load_manifest(manifest_path).ids(), len(base.streams()))
        fs, manifest = FeatureStore(store, read_only=True), load_manifest(manifest_path)
        config = base.replace(input_modalities=modalities, epochs=1,
                              early_stop_patience=None, grad_clip=1.0, device=device,
                              amp="bf16" if on_gpu else "off", bootstrap_resamples=0)
        splits = split_videos(manifest, config)
        splits["val"] = splits["val"][:1]  # the loop's evaluation stays small next to the epoch
        clocks = _split_clocks(fs, manifest, config, splits)
        task = make_task(config, fs, clocks)

        def build() -> torch.nn.Module:
            seed_everything(0)
            return build_raav(config, task.input_dims).to(device)

        def sync() -> None:
            if on_gpu:
                torch.cuda.synchronize()

        def through_loop() -> None:
            fit(build(), task, config, root / f"run-{time.perf_counter_ns()}", resume=False)
            sync()

        # The same windows as tensors built up front, the same model, loss and clipping, a plain loop.
        batches = list(task.train_batches(1, torch.Generator().manual_seed(1)))

        def bare() -> None:
            model = build()
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            model.train()
            for batch in batches:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=on_gpu):
                    loss = model.loss(model(batch["batch"]), batch["y"].float(), batch["mask"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            sync()

        bare()  # warm-up (allocator, kernels) outside the timings
        if on_gpu:
            t_bare, t_loop = best_interleaved([bare, through_loop], max(repeat, 3))
        else:
            # One intra-op thread and CPU seconds: on a shared, oversubscribed CPU the wall time of two
            # OpenMP threads swings by 2x between runs and says nothing about the loop's own work.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                t_bare, t_loop = best_interleaved([bare, through_loop], max(repeat, 3),
                                                  clock=time.process_time)
            finally:
                torch.set_num_threads(threads)
        n_windows = sum(int(b["y"].shape[0]) for b in batches)
        n_params = sum(p.numel() for p in build().parameters())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    size = f"hidden {config.hidden}, {n_params:,} parameters"
    which = "authors' size" if (on_gpu or authors_size) else "demo size"
    return [
        {"benchmark": f"bare PyTorch RAAV epoch over pre-built batches, {which} (baseline)",
         "seconds": t_bare, "ratio": 1.0, "note": f"{size}, {n_windows} windows of {config.window}, batch "
                               f"{config.batch_size}, {where}"
                               + ("" if on_gpu else " (CPU s, 1 thread)")},
        {"benchmark": f"RAAV epoch through fit() (fusion-windows task), {which}", "seconds": t_loop,
         "ratio": t_loop / t_bare, "note": "index gather + audio tokens per batch, 1-video validation, "
                                           "last/best.pt"},
    ]


def bench_fusion(repeat: int, *, gpu: bool = False, n_videos: int = 25, frames: int = 1000,
                 ) -> list[dict[str, Any]]:
    """Every fusion benchmark: on CPU at the demo's size (fixed per-batch costs weigh most) and at the
    authors' size (1.7 M parameters); with ``gpu``, the authors' size on CUDA."""
    rows = bench_fusion_epoch(repeat, gpu=gpu, n_videos=n_videos, frames=frames)
    if not gpu:
        rows += bench_fusion_epoch(repeat, n_videos=n_videos, frames=frames, authors_size=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="the authors' sizes on CUDA")
    parser.add_argument("--videos", type=int, default=25)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = bench_fusion(args.repeat, gpu=args.gpu, n_videos=args.videos, frames=args.frames)
    for r in results:
        sys.stdout.write(f"{r['benchmark']:<60} {r['seconds']:9.3f} {r['ratio']:6.2f}  {r['note']}\n")
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
