"""MCDM benchmarks (ratios measured in one process; see run.py, or run this file alone).

1. One training epoch over ``--clips`` (default 45,000) cached clip vectors (three single-task corpora
   concatenated, NaN labels, pseudo-labels and dual-branch GradNorm) through
   :func:`affectcache.trainers.loop.fit` (batch gather by index, a dev pass, metrics files, checkpoints)
   vs a bare PyTorch loop (Adam, the same model, losses and GradNorm) over the same batches pre-built as
   tensors. Tiny dims on CPU (the loop's overhead, not the model, is what is measured).
2. The clip-level data step: ``mean‖std`` aggregation of ``--entries`` stored entries (segment rows,
   3–9 rows of 768 values each) vs ``FeatureStore.load`` of the same entries (the aggregation reads
   ``load``'s output, so the ratio is its extra cost).

    python benchmarks/bench_mcdm.py [--clips 45000] [--entries 45000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from timing import best_interleaved  # benchmarks/ is on sys.path when run as a script


def _planted_dataset(n: int, dims: dict[str, int], seed: int = 0) -> Any:
    from affectcache.trainers.mcdm.data import ClipCorpus, ClipDataset, ClipVectors
    from affectcache.trainers.mcdm.labels import TaskLabels

    rng = np.random.default_rng(seed)
    corpora = []
    for k, name in enumerate(("mosei", "fiv2", "bah")):
        m = n // 3
        ids = tuple(f"{name}{i}" for i in range(m))
        labels = TaskLabels.empty(m)
        if k == 0:
            labels.emotion[:] = np.eye(7, dtype=np.float32)[rng.integers(0, 7, m)]
        elif k == 1:
            labels.personality[:] = rng.random((m, 5), dtype=np.float32)
        else:
            labels.ah[:] = rng.integers(0, 2, m)
        features = {mod: ClipVectors(modality=mod, video_ids=ids, present=np.ones(m, bool),
                                     values=rng.standard_normal((m, d), np.float32))
                    for mod, d in dims.items()}
        splits = np.where(np.arange(m) % 20 == 0, "val", "train")
        corpora.append(ClipCorpus(name=name, video_ids=ids, splits=splits, labels=labels, features=features))
    return ClipDataset(corpora)


def bench_epoch(clips: int, repeat: int) -> list[dict[str, Any]]:
    import torch

    from affectcache.trainers.loop import fit
    from affectcache.trainers.mcdm.config import demo_config
    from affectcache.trainers.mcdm.gradnorm import DualGradNorm
    from affectcache.trainers.mcdm.losses import loss_components
    from affectcache.trainers.mcdm.model import MCDM
    from affectcache.trainers.mcdm.task import MultitaskTask

    torch.set_num_threads(1)
    dims = {"face": 64, "audio": 96, "text": 96, "behaviour": 96}
    dataset = _planted_dataset(clips, dims)
    config = demo_config(input_dims=tuple(dims.values()), epochs=1, batch_size=32, lr=1e-4)
    train_index = dataset.indices(split="train")
    prebuilt = dataset.batches(train_index, config.batch_size, generator=torch.Generator().manual_seed(1))

    with tempfile.TemporaryDirectory() as tmp:
        def through_loop() -> None:
            torch.manual_seed(0)
            model = MCDM(config.model_config(dataset.modality_dims))
            fit(model, MultitaskTask(config, dataset), config, Path(tmp) / f"run-{time.perf_counter_ns()}",
                resume=False)

        def bare() -> None:
            torch.manual_seed(0)
            model = MCDM(config.model_config(dataset.modality_dims))
            gradnorm = DualGradNorm(config.gradnorm_config())
            pseudo = config.pseudo_config()
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            shared = list(model.shared_parameters())
            model.train()
            for batch in prebuilt:
                optimizer.zero_grad(set_to_none=True)
                loss = gradnorm.combine(loss_components(model(batch.features), batch.labels, pseudo), shared)
                loss.backward()
                optimizer.step()

        t_bare, t_loop = best_interleaved([bare, through_loop], repeat)
    return [
        {"benchmark": "MCDM bare PyTorch epoch over pre-built batches (baseline)", "seconds": t_bare,
         "ratio": 1.0, "note": f"{len(train_index)} train clips, 3 corpora, H32, GradNorm, CPU 1 thread"},
        {"benchmark": "MCDM epoch through fit() (index gather, dev pass, checkpoints)", "seconds": t_loop,
         "ratio": t_loop / t_bare, "note": f"+ dev pass over {len(dataset) - len(train_index)} clips"},
    ]


def _write_entries(root: Path, n: int, dim: int = 768, seed: int = 0) -> tuple[Any, list[str]]:
    from affectcache.extractors.core.provenance import stable_hash
    from affectcache.extractors.core.records import FeatureArray
    from affectcache.store.zarr_store import FeatureStore

    rng = np.random.default_rng(seed)
    fs = FeatureStore(root / "bench-mcdm.zarr")
    config = {"dim": dim}
    fs.init_modality("seq-bench", {
        "extractor": "bench", "version": "1", "modality_kind": "segment", "config": config,
        "config_fingerprint": stable_hash(config), "upstream": {},
        "model": {"id": None, "revision": None, "sha256": None}, "libraries": {}, "created": "now"})
    ids = []
    for i in range(n):
        rows = int(rng.integers(3, 10))
        start = np.arange(rows, dtype=np.float64)
        vid = f"c{i:06d}"
        values = rng.standard_normal((rows, dim), np.float32).astype(np.float16)
        fs.write("seq-bench", FeatureArray(video_id=vid, kind="segment", start_s=start, end_s=start + 1,
                                           values=values))
        ids.append(vid)
    return fs, ids


def bench_aggregation(entries: int, repeat: int) -> list[dict[str, Any]]:
    from affectcache.trainers.mcdm.data import aggregate_mean_std

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fs, ids = _write_entries(Path(tmp), entries)
        write_s = time.perf_counter() - started
        packed = fs.load("seq-bench", ids)
        t_load, t_agg = best_interleaved(
            [lambda: fs.load("seq-bench", ids), lambda: aggregate_mean_std(packed)], repeat)
    return [
        {"benchmark": "FeatureStore.load of clip entries (baseline)", "seconds": t_load, "ratio": 1.0,
         "note": f"{entries} entries, 3-9 rows x 768 float16 (written in {write_s:.0f}s)"},
        {"benchmark": "mean||std aggregation of the loaded entries", "seconds": t_agg,
         "ratio": t_agg / t_load, "note": "one pass per chunk, sparse entry sums"},
    ]


def bench_mcdm(repeat: int, *, clips: int = 45_000, entries: int = 45_000) -> list[dict[str, Any]]:
    """Both MCDM benchmarks."""
    return bench_epoch(clips, repeat) + bench_aggregation(entries, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=45_000)
    parser.add_argument("--entries", type=int, default=45_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = bench_mcdm(args.repeat, clips=args.clips, entries=args.entries)
    for r in results:
        sys.stdout.write(f"{r['benchmark']:<64} {r['seconds']:9.3f} {r['ratio']:6.2f}  {r['note']}\n")
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
