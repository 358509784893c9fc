"""``affectcache demo mcdm``: MCDM multitask with pseudo-labels on planted corpora, beside single-task
supervised baselines and chance.

Writes the planted corpora of :mod:`affectcache.trainers.mcdm.synthetic` (three single-task corpora and a
MELD-like one) under ``out`` — by default as encoded clips whose colour and tone carry the labels, with
``clip-scene`` (the demo's tiny CLIP) and ``mfcc`` built by the store runner — trains ``mcdm`` (tiny dims)
on the three concatenated corpora with pseudo-labels and GradNorm (``out/multitask``), then, per task, the
same model with only that task, on only its corpus, without pseudo-labels (``out/single-<task>``). Every
held-out (test split) figure is reported with its bootstrap interval beside the baseline's and a chance
level: the mean of the figure over 20 permutations of the multitask model's test outputs against the labels
(what a model that ignores its input scores on these labels). ``demo.md`` / ``demo.json`` hold the
comparison.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.atomic import atomic_write_json, atomic_write_text
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.mcdm.config import MCDMTrainConfig, demo_config
from affectcache.trainers.mcdm.synthetic import AUDIO, FACE, MEDIA_INPUTS, write_corpora

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from affectcache.trainers.mcdm.run import Corpus

logger = logging.getLogger(__name__)

FIGURES: dict[str, tuple[str, str]] = {
    "mosei_mwacc": ("emotion", "mosei"), "mosei_mmf1": ("emotion", "mosei"),
    "fiv2_macc": ("personality", "fiv2"), "fiv2_mccc": ("personality", "fiv2"),
    "bah_mf1": ("ah", "bah"), "bah_uar": ("ah", "bah")}
"""Held-out figures of the demo: task and corpus of each."""
PERMUTATIONS = 20
"""Permutations averaged into a figure's chance level."""


@dataclass(frozen=True, kw_only=True)
class DemoReport:
    """What the demo measured."""

    rows: list[dict[str, Any]]
    """Per figure: multitask value and interval, single-task value, chance, above-chance verdict."""
    table: str
    """The rows as Markdown."""


def demo_train_config(*, media: bool = True, **changes: Any) -> MCDMTrainConfig:
    """The demo's config: tiny MCDM-2 over the two planted inputs."""
    sources = tuple(MEDIA_INPUTS.values()) if media else (FACE, AUDIO)
    base = demo_config(modalities=tuple(MEDIA_INPUTS), input_dims=(1, 1), sources=sources)
    return base.replace(**changes)


def run_demo(out: Path, *, clips: int = 150, epochs: int = 30, seed: int = 0, media: bool = True,
             ) -> DemoReport:
    """Write the planted corpora, train multitask and single-task runs, compare on the test splits.

    Runs with one torch thread: the demo's models are tiny, and several threads on a shared CPU make each
    step many times slower (restored afterwards).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(out, clips=clips, epochs=epochs, seed=seed, media=media)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, *, clips: int, epochs: int, seed: int, media: bool) -> DemoReport:
    from affectcache.trainers.mcdm.run import train_mcdm

    planted = write_corpora(out / "corpora", n=clips, seed=seed, media=media)
    pairs = {name: (FeatureStore(str(c.store), read_only=True), load_manifest(c.manifest))
             for name, c in planted.items()}
    config = demo_train_config(media=media, epochs=epochs)
    corpora = [pairs[c] for c in ("mosei", "fiv2", "bah")]
    multitask = train_mcdm("mcdm", corpora, out / "multitask", config=config, meld=pairs["meld"],
                           overwrite=True)
    singles: dict[str, dict[str, Any]] = {}
    for task, corpus in {t: c for t, c in FIGURES.values()}.items():
        single = train_mcdm("mcdm", [pairs[corpus]], out / f"single-{task}", overwrite=True,
                            config=config.replace(active_tasks=[task], pseudo_labels=False))
        singles[task] = single.record["results"]["test"]
    chance = chance_levels(multitask.run_dir, config, corpora)
    rows = []
    results = multitask.record["results"]["test"]
    for key, (task, _) in FIGURES.items():
        entry = results[key]
        rows.append({"figure": key, "multitask": entry["value"], "low": entry["low"], "high": entry["high"],
                     "single_task": singles[task][key]["value"], "chance": chance[key],
                     "above_chance": bool(entry["low"] > chance[key])})
    meld = multitask.record["results"]["meld"]
    for key in ("meld_mf1", "meld_wf1"):
        rows.append({"figure": key + " (zero-shot)", "multitask": meld[key]["value"], "low": meld[key]["low"],
                     "high": meld[key]["high"], "single_task": None, "chance": 1 / 7,
                     "above_chance": bool(meld[key]["low"] > 1 / 7)})
    table = _markdown(rows)
    atomic_write_json(out / "demo.json", {"rows": rows, "config": config.to_dict(), "clips": clips,
                                          "media": media})
    atomic_write_text(out / "demo.md", table)
    return DemoReport(rows=rows, table=table)


def chance_levels(run_dir: Path, config: MCDMTrainConfig, corpora: Sequence[Corpus]) -> dict[str, float]:
    """Each test figure averaged over permutations of the run's test outputs (see the module docstring)."""
    from affectcache.trainers.mcdm.data import ClipDataset
    from affectcache.trainers.mcdm.evaluate import predict, score
    from affectcache.trainers.mcdm.run import load_best, load_corpora
    from affectcache.trainers.mcdm.task import labels_of
    from affectcache.trainers.models import get_model_spec

    dataset = ClipDataset(load_corpora(corpora, config))
    model = get_model_spec("mcdm").build(config, dataset.modality_dims)
    load_best(model, run_dir, config.device)
    index = dataset.indices(split=config.test_split)
    outputs = predict(model, dataset, index)
    labels = labels_of(dataset, index)
    rng = np.random.default_rng(config.seed)
    totals: dict[str, list[float]] = {k: [] for k in FIGURES}
    for _ in range(PERMUTATIONS):
        shuffled = {}
        for task, values in outputs.items():
            # Permute within the rows labelled for the task, so every label meets another clip's output.
            rows = np.flatnonzero(np.isfinite(labels[task]).reshape(len(index), -1).all(axis=1))
            permuted = values.copy()
            permuted[rows] = values[rng.permutation(rows)]
            shuffled[task] = permuted
        figures = score(shuffled, labels)
        for key in FIGURES:
            totals[key].append(figures[key])
    return {k: float(np.mean(v)) for k, v in totals.items()}


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure (test) | multitask + SSL [95% CI] | single-task supervised | chance | above chance |",
             "|---|---|---|---|---|"]
    for r in rows:
        single = "—" if r["single_task"] is None else f"{r['single_task']:.3f}"
        lines.append(f"| {r['figure']} | {r['multitask']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {single} | "
                     f"{r['chance']:.3f} | {'yes' if r['above_chance'] else 'no'} |")
    return "\n".join(lines) + "\n"
