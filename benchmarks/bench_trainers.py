"""Trainer benchmarks (ratios measured in one process; see run.py).

1. One training epoch of ``ras-face`` through :func:`affectcache.trainers.loop.fit` (batches gathered by
   index from the packed store arrays, deterministic mode, metrics files and checkpoints) vs a bare
   PyTorch loop (AdamW, the same model and inline CCC loss) over the same windows pre-built as tensors.
2. Building the ``ras-face`` views for Aff-Wild2-like inputs (default 600 videos × ~5k frames × 256
   float16 values) — the inputs put on the label clock by index, the windows, the training-window
   filter — vs ``FeatureStore.load`` of those inputs.
3. With ``--gpu`` on a CUDA machine: training windows/s per head at the authors' sizes with bf16 autocast
   (random inputs of the real widths).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from timing import best_of  # benchmarks/ is on sys.path when run as a script

if TYPE_CHECKING:
    from collections.abc import Callable



def _best_interleaved(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Best of ``repeat`` for each function, run in turns (A B A B ...) so load swings hit both."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, sink in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - started)
    return [min(t) for t in times]


def _write_store(root: Path, n_videos: int, frames: int, dim: int, *, seed: int = 0) -> tuple[Path, Path]:
    """Label tracks at 30 fps + a 256-d float16 frame modality on the same clock; manifest 80/20 train/val."""
    from affectcache.extractors.core.provenance import stable_hash
    from affectcache.extractors.core.records import FeatureArray, MediaItem
    from affectcache.store.manifest import write_manifest
    from affectcache.store.zarr_store import FeatureStore

    rng = np.random.default_rng(seed)
    fs = FeatureStore(root / "bench-va.zarr")
    for track in ("valence", "arousal"):
        fs.init_label_track(track, source="bench")
    config = {"dim": dim}
    fs.init_modality("face-bench", {
        "extractor": "bench", "version": "1", "modality_kind": "frame", "config": config,
        "config_fingerprint": stable_hash(config), "upstream": {},
        "model": {"id": None, "revision": None, "sha256": None}, "libraries": {}, "created": "now"})
    w = rng.standard_normal((2, dim)).astype(np.float32)
    items = []
    for i in range(n_videos):
        n = frames + int(rng.integers(-frames // 5, frames // 5))
        frame = np.arange(n)
        t = frame / 30.0
        va = np.stack([np.sin(t / (3 + i % 7)), np.cos(t / (5 + i % 5))], 1).astype(np.float32) * 0.7
        vid = f"v{i:04d}"
        for k, track in enumerate(("valence", "arousal")):
            fs.write(f"labels/{track}", FeatureArray(video_id=vid, kind="frame", values=va[:, k], frame=frame,
                                                     time_s=t))
        values = (va @ w + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float16)
        fs.write("face-bench", FeatureArray(video_id=vid, kind="frame", values=values, frame=frame, time_s=t,
                                            mask=rng.random(n) > 0.05))
        items.append(MediaItem(video_id=vid, path=f"/{vid}.mp4", split="train" if i % 5 else "val"))
    write_manifest(items, root / "bench-va.jsonl")
    return root / "bench-va.zarr", root / "bench-va.jsonl"


def bench_views(repeat: int, n_videos: int, frames: int) -> list[dict[str, Any]]:
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.data.clock import load_clock
    from affectcache.trainers.data.inputs import InputModality, align_frame_input
    from affectcache.trainers.data.views import frame_windows

    root = Path(tempfile.mkdtemp(prefix="bench-views-"))
    try:
        store, manifest_path = _write_store(root, n_videos, frames, 256)
        fs = FeatureStore(store, read_only=True)
        ids = load_manifest(manifest_path).ids()
        t_labels = best_of(lambda: load_clock(fs, ("valence", "arousal"), ids), repeat)
        packed = fs.load("face-bench", ids)
        clock = load_clock(fs, ("valence", "arousal"), ids)
        source = InputModality(packed=packed, columns=None)

        def build() -> int:
            aligned = align_frame_input(source, clock, max_fill_s=None)
            windows = frame_windows(clock, window=400, hop=150)
            rows, valid = windows.gather_rows()
            usable = (valid & (clock.target_mask & aligned.valid & ~aligned.filled)[rows]).any(axis=1)
            return int(usable.sum())

        t_load, t_build = _best_interleaved([lambda: fs.load("face-bench", ids), build], repeat)
        n_windows = build()
        gb = packed.values.nbytes / 1e9
    finally:
        shutil.rmtree(root, ignore_errors=True)
    note = f"{n_videos} videos, {clock.n_rows / 1e6:.2f} M frames x 256 float16 ({gb:.2f} GB)"
    return [
        {"benchmark": "FeatureStore.load of the face input (baseline)", "seconds": t_load, "ratio": 1.0,
         "note": note},
        {"benchmark": "load_clock (labels/valence + labels/arousal)", "seconds": t_labels,
         "ratio": t_labels / t_load, "note": "for scale"},
        {"benchmark": "ras-face views built (align by index + windows)", "seconds": t_build,
         "ratio": t_build / t_load, "note": f"{n_windows} training windows of 400 frames"},
    ]


def bench_epoch(repeat: int) -> list[dict[str, Any]]:
    import torch

    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.loop import fit, seed_everything
    from affectcache.trainers.models.ras_face import RasFaceConfig, RasFaceModel
    from affectcache.trainers.va import _split_clocks, split_videos
    from affectcache.trainers.va_tasks import make_task

    root = Path(tempfile.mkdtemp(prefix="bench-epoch-"))
    try:
        store, manifest_path = _write_store(root, 25, 1000, 256)
        fs, manifest = FeatureStore(store, read_only=True), load_manifest(manifest_path)
        config = RasFaceConfig(input_modality="face-bench", input_columns=None, hidden=64, n_heads=4,
                               n_layers=2, window=200, hop=100, epochs=1, batch_size=8,
                               early_stop_patience=None)
        splits = split_videos(manifest, config)
        splits["val"] = splits["val"][:1]  # the loop's evaluation stays small next to the epoch
        clocks = _split_clocks(fs, manifest, config, splits)
        task = make_task(config, fs, clocks)

        def through_loop() -> None:
            seed_everything(0)
            model = RasFaceModel(config, task.input_width)
            fit(model, task, config, root / f"run-{time.perf_counter_ns()}", resume=False)

        # The same windows as tensors built up front, the same model, a plain loop.
        batches = list(task.train_batches(1, torch.Generator().manual_seed(1)))

        def bare() -> None:
            seed_everything(0)
            model = RasFaceModel(config, task.input_width)
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            model.train()
            for batch in batches:
                optimizer.zero_grad()
                pred = model(batch["x"], batch["pad"])
                m = batch["mask"].unsqueeze(-1).float()
                n = m.sum(1).clamp(min=1)
                mp, mt = (pred * m).sum(1) / n, (batch["y"] * m).sum(1) / n
                dp, dt = (pred - mp[:, None]) * m, (batch["y"] - mt[:, None]) * m
                cov, vp, vt = (dp * dt).sum(1) / n, (dp * dp).sum(1) / n, (dt * dt).sum(1) / n
                loss = (1 - 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)).mean()
                loss.backward()
                optimizer.step()

        t_bare, t_loop = _best_interleaved([bare, through_loop], max(repeat, 3))
        n_windows = sum(int(b["x"].shape[0]) for b in batches)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        {"benchmark": "bare PyTorch epoch over pre-built window tensors (baseline)", "seconds": t_bare,
         "ratio": 1.0, "note": f"ras-face h64 x2 layers, {n_windows} windows of 200, CPU"},
        {"benchmark": "ras-face epoch through fit() (index gather, checkpoints)", "seconds": t_loop,
         "ratio": t_loop / t_bare, "note": "includes a 1-video validation pass and last/best.pt"},
    ]


def bench_gpu_heads(repeat: int) -> list[dict[str, Any]]:
    """Training windows/s per head at the authors' sizes, bf16 autocast, random inputs (CUDA only)."""
    import torch

    from affectcache.trainers.models import get_model_spec

    if not torch.cuda.is_available():
        return [{"benchmark": "GPU heads (skipped: no CUDA device)", "seconds": float("nan"), "ratio": 1.0,
                 "note": ""}]
    out = []
    shapes = {"ras-face": (256, 400), "ras-behaviour": (2560, 16), "ras-audio": (1024, 200)}
    for name, (width, steps) in shapes.items():
        spec = get_model_spec(name)
        model = spec.build(spec.config_type(), {"input": width}).cuda()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(64, steps, width, device="cuda")
        mask = torch.ones(64, steps, dtype=torch.bool, device="cuda")

        def step(model: Any = model, optimizer: Any = optimizer, x: torch.Tensor = x,
                 mask: torch.Tensor = mask) -> None:
            for _ in range(10):
                optimizer.zero_grad()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(x, mask).float().pow(2).mean()
                loss.backward()
                optimizer.step()
            torch.cuda.synchronize()

        step()
        seconds = best_of(step, repeat)
        out.append({"benchmark": f"{name} training windows/s (bf16, batch 64)", "seconds": seconds,
                    "ratio": 1.0, "note": f"{640 / seconds:.0f} windows/s on {torch.cuda.get_device_name()}"})
    return out


def bench_trainers(repeat: int, *, gpu: bool = False, n_videos: int = 600, frames: int = 5000,
                   ) -> list[dict[str, Any]]:
    """Every trainer benchmark."""
    results = bench_epoch(repeat) + bench_views(repeat, n_videos, frames)
    if gpu:
        results += bench_gpu_heads(repeat)
    return results
