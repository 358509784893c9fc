"""The offline demo: a synthetic corpus with a planted affect signal, built into a feature store.

``run_demo(out)`` generates (once) short H.264+AAC clips whose per-frame valence and arousal drive what
the features can see and hear, writes their manifest, imports the planted tracks as ``labels/valence``
and ``labels/arousal``, then builds every registered extractor that declares a ``demo_config`` (in
dependency order). Everything is idempotent: a second run finds all entries complete and does no work.

Layout under ``out``: ``media/`` (clips + corpus.json), ``demo.jsonl`` (manifest), ``features.zarr``
(the store), ``work/`` (offline assets extractors may need, e.g. tiny stand-in models).

``run_demo_chain(out, steps)`` is the whole demo (what ``affectcache demo`` and ``make demo`` run):
``run_demo``, then the steps that read the store — the LaScA chain here, trainers' steps given by the
layers above (the store never imports trainers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import available_extractors, get_extractor_cls
from affectcache.extractors.testing.synthetic import DemoClip, generate_demo_corpus
from affectcache.store.errors import StoreError
from affectcache.store.executors import (
    InProcessExecutor,
    SupportsSubmit,
    default_worker_count,
    local_dask_client,
)
from affectcache.store.manifest import Manifest, load_manifest, write_manifest
from affectcache.store.runner import BuildReport, build_many, dependency_order
from affectcache.store.zarr_store import FeatureStore, label_modality

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

logger = logging.getLogger(__name__)

DEMO_CORPUS = "affectcache-demo"
LABEL_TRACKS = ("valence", "arousal")


@dataclass(frozen=True, kw_only=True)
class DemoResult:
    """Where the demo put things and what each build did."""

    out_dir: Path
    """Root folder of the demo."""
    manifest_path: Path
    """The corpus manifest (JSONL)."""
    manifest: Manifest
    """The loaded manifest."""
    store: FeatureStore
    """The feature store."""
    reports: tuple[BuildReport, ...]
    """One build report per demo modality, in build order."""


@contextlib.contextmanager
def _shared_executor(workers: int | None) -> Iterator[SupportsSubmit]:
    """One executor for every demo modality: worker processes start (and import torch) once."""
    n = default_worker_count() if workers is None else workers
    if n <= 0:
        yield InProcessExecutor()
        return
    with local_dask_client(n) as client:
        yield client


def demo_plan(workdir: Path) -> list[tuple[str, Any]]:
    """``(name, config)`` of every registered extractor whose ``demo_config`` is not None, ordered so
    that required modalities are built first."""
    configs = {n: get_extractor_cls(n).demo_config(workdir) for n in available_extractors()}
    extractors = {n: get_extractor_cls(n)(cfg) for n, cfg in configs.items() if cfg is not None}
    for name, extractor in extractors.items():
        for required in extractor.upstream_modalities():
            if required not in extractors:
                raise StoreError(f"demo extractor {name!r} requires {required!r}, which has no demo config")
    return [(n, configs[n]) for n in dependency_order(extractors)]


def import_demo_labels(store: FeatureStore, clips: list[DemoClip], items: list[MediaItem]) -> int:
    """Write the planted valence/arousal tracks as frame-level label tracks; returns entries written."""
    written = 0
    for track in LABEL_TRACKS:
        name = store.init_label_track(track, source=DEMO_CORPUS,
                                      description=f"planted per-frame {track} of the synthetic demo clips")
        for clip, item in zip(clips, items, strict=True):
            if store.has(name, clip.video_id):
                continue
            values = np.asarray(getattr(clip, track), dtype=np.float32)
            frame = np.arange(values.shape[0], dtype=np.int64)
            store.write(name, FeatureArray(video_id=clip.video_id, kind="frame", values=values, frame=frame,
                                           time_s=frame / clip.fps, mask=np.ones(values.shape[0], bool)),
                        source=item.source_info())
            written += 1
    return written


def run_demo(out_dir: str | Path, *, workers: int | None = None, progress: bool = False,
             extractors: list[str] | None = None, corpus: Mapping[str, Any] | None = None) -> DemoResult:
    """Generate the demo corpus (once) and build every demo modality into ``out_dir/features.zarr``.

    Args:
        out_dir: Root folder of the demo.
        workers: Local Dask workers (None = one per core, 0 = in this process).
        progress: Show progress bars.
        extractors: Build only these demo modalities (default: all).
        corpus: Overrides for :func:`generate_demo_corpus` (e.g. fewer, shorter clips in tests).
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clips = generate_demo_corpus(out / "media", **dict(corpus or {}))
    manifest_path = out / "demo.jsonl"
    items = [MediaItem(video_id=c.video_id, path=str(c.path), split=c.split, corpus=DEMO_CORPUS,
                       labels={"duration_s": round(c.duration_s, 3), "fps": c.fps}) for c in clips]
    if not manifest_path.exists() or load_manifest(manifest_path).items != tuple(items):
        write_manifest(items, manifest_path)
    manifest = load_manifest(manifest_path)
    store = FeatureStore(out / "features.zarr")
    n_labels = import_demo_labels(store, clips, items)
    if n_labels:
        logger.info("imported %d label entries (%s)", n_labels, ", ".join(map(label_modality, LABEL_TRACKS)))
    reports = []
    work = out / "work"
    work.mkdir(exist_ok=True)
    plan = [(n, c) for n, c in demo_plan(work) if extractors is None or n in extractors]
    with _shared_executor(workers) as executor:
        # All modalities in one pass: each task decodes an item's audio once for every audio modality.
        reports.extend(build_many([n for n, _ in plan], manifest, store, configs=dict(plan),
                                  executor=executor, workers=workers, progress=progress))
    return DemoResult(out_dir=out, manifest_path=manifest_path, manifest=manifest, store=store,
                      reports=tuple(reports))


# ---- the whole chain: build, then the steps that read the store ----------------------------------------
@dataclass(frozen=True, kw_only=True)
class DemoStep:
    """One step after the demo's extraction: reads (and may add to) the store, returns a summary line."""

    name: str
    """Short name, shown in the output."""
    run: Callable[[DemoResult], str]
    """Runs the step on the built demo; returns one line saying what it did."""
    next_command: str = ""
    """A command a user would run next to go further with this step's output (``{out}`` = demo folder)."""


def lasca_step(window_s: float = 3.0) -> DemoStep:
    """The LaScA chain (train-split normaliser, window features, window text, text embeddings)."""

    def run(result: DemoResult) -> str:
        from affectcache.store.pipelines.lasca import build_lasca

        chain = build_lasca(result.store, result.manifest, window_s=window_s)
        return "; ".join(report.summary().split(" -> ")[0] for report in chain.reports)

    return DemoStep(name="lasca", run=run,
                    next_command=f"affectcache lasca build -s {{out}}/features.zarr -m {{out}}/demo.jsonl "
                                 f"--window-s {window_s:g}")


@dataclass(frozen=True, kw_only=True)
class DemoChain:
    """What :func:`run_demo_chain` did."""

    result: DemoResult
    """The extraction part (store, manifest, build reports)."""
    steps: tuple[tuple[str, str], ...]
    """``(step name, summary line)`` per step after extraction, in order."""
    next_commands: tuple[str, ...]
    """Commands a user would run next."""


def run_demo_chain(out_dir: str | Path, steps: Sequence[DemoStep], *, workers: int | None = None,
                   progress: bool = False, extractors: list[str] | None = None,
                   corpus: Mapping[str, Any] | None = None) -> DemoChain:
    """The whole demo: :func:`run_demo` (corpus, labels, every demo modality), then each step in order.

    Steps come from the caller, so layers above the store (trainers) add theirs without the store
    importing them; every step is idempotent like the build (a rerun redoes nothing).
    """
    result = run_demo(out_dir, workers=workers, progress=progress, extractors=extractors, corpus=corpus)
    done = []
    for step in steps:
        logger.info("demo step %s", step.name)
        done.append((step.name, step.run(result)))
    nexts = [step.next_command.format(out=result.out_dir) for step in steps if step.next_command]
    return DemoChain(result=result, steps=tuple(done), next_commands=(
        f"affectcache status -s {result.store.url} -m {result.manifest_path}", *nexts))
