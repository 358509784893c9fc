"""The demo's Kookmin step: the soft-prompt model on the demo store's CLIP face embeddings and AST windows.

Trains ``kookmin`` with its ``demo`` preset (the prompts encoded by the demo's stand-in CLIP text tower,
the same model that made ``clip-face``), writes ``pred-kookmin`` and reports the held-out CCC. It runs
after the unimodal heads (:func:`affectcache.trainers.demo.va_demo_steps`); a rerun reuses the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectcache.store.pipelines.demo import DemoStep
from affectcache.trainers.demo import DemoHead, face_input
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.predict import predict_to_store
from affectcache.trainers.va import train_va

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from affectcache.store.manifest import Manifest
    from affectcache.store.pipelines.demo import DemoResult
    from affectcache.store.zarr_store import FeatureStore

MODEL = "kookmin"
AUDIO_INPUT = "ast"


def train_demo_kookmin(fs: FeatureStore, manifest: Manifest, out_dir: Path, *, progress: bool = False,
                       overrides: Mapping[str, Any] | None = None) -> DemoHead:
    """Train ``kookmin`` on the demo's face CLIP embeddings + AST windows; predictions go to
    ``pred-kookmin``. One torch thread: the model is tiny and several threads on a shared CPU make each
    GRU step many times slower (restored afterwards)."""
    import torch

    config = dict(get_model_spec(MODEL).presets or {})["demo"]().replace(
        input_modalities=(face_input(fs), AUDIO_INPUT), **dict(overrides or {}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_va(MODEL, fs, manifest, out_dir / "runs" / MODEL, config=config, progress=progress)
        report = predict_to_store(run.run_dir, fs, manifest, modality=f"pred-{MODEL}", overwrite=True)
    finally:
        torch.set_num_threads(threads)
    results = run.record["results"]
    split = config.test_split if config.test_split in results else config.val_split
    return DemoHead(model=MODEL, input_modality=" + ".join(config.input_names()), run_dir=run.run_dir,
                    held_out={"split": split, **results[split]}, prediction_modality=report.modality)


def kookmin_demo_step() -> DemoStep:
    """The demo step (after the unimodal heads)."""

    def run(result: DemoResult) -> str:
        return train_demo_kookmin(result.store, result.manifest, result.out_dir).summary()

    return DemoStep(name=f"train {MODEL} (soft prompts)", run=run,
                    next_command=f"affectcache evaluate --run {{out}}/runs/{MODEL} -s {{out}}/features.zarr "
                                 "-m {out}/demo.jsonl --split test")
