"""The build runner: one modality × a manifest → a feature store, on any executor.

``build`` runs on the driver: it validates the config, takes the modality's lock, creates (or checks) the
modality group and its provenance, plans the items that are missing or whose source changed (from the
catalog, not per-entry reads), and submits per-chunk-of-videos tasks. Each task runs on a worker, where
the extractor is created once per process (weights load once, lazily), and writes what it produced as
one new fragment per modality; the driver commits each task's fragment together with its per-item
failures (one catalog record). Only :class:`BadMediaError` is a per-item failure (the batch is retried
item by item to isolate it); any other exception stops the run, and everything already committed stays.

Because an entry only counts once its catalog commit is written, a run killed at any point (even
``kill -9``) resumes by running the same command again, and ends equal to an uninterrupted run. A
whole-modality rebuild (``overwrite``) writes beside the live data and switches when the run completes;
at the end, a modality left with many small fragments is compacted (:class:`CompactionPolicy`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import dataclasses
import functools
import importlib
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affectcache.extractors.common.hub import check_model_available, hub_models
from affectcache.extractors.core.base import Extractor
from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.core.errors import BadMediaError, ConfigError, MissingStreamError
from affectcache.extractors.core.provenance import utc_now
from affectcache.extractors.core.records import MediaItem
from affectcache.extractors.core.registry import did_you_mean, get_extractor_cls
from affectcache.extractors.core.verbosity import apply_verbosity
from affectcache.extractors.media.decode_memo import (
    DEFAULT_BUDGET_MB,
    NO_MEDIA,
    MediaNeeds,
    combined_needs,
    shared_decoding,
)
from affectcache.store.errors import FeatureNotFoundError, ProvenanceMismatchError, StoreError
from affectcache.store.executors import (
    InProcessExecutor,
    SupportsSubmit,
    as_completed,
    cancel_all,
    default_worker_count,
    local_dask_client,
    submit_task,
)
from affectcache.store.format.compaction import CompactionPolicy, maybe_compact
from affectcache.store.format.fragments import FragmentInfo
from affectcache.store.ids import validate_video_id
from affectcache.store.lock import ModalityLock
from affectcache.store.stopping import signals_deferred
from affectcache.store.zarr_store import FeatureStore, identity_differences, source_changed

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

    from affectcache.extractors.core.base import Upstream
    from affectcache.extractors.core.records import FeatureArray
    from affectcache.store.format.catalog import CatalogState
    from affectcache.store.manifest import Manifest

logger = logging.getLogger(__name__)

MISSING_UPSTREAM = "MissingUpstreamError"
DEFAULT_COMPACTION = CompactionPolicy()
LOG_EVERY_S = 10.0


@dataclass(frozen=True, kw_only=True)
class ItemFailure:
    """One item that could not be built, as recorded in the store."""

    video_id: str
    """The item."""
    error: str
    """Error class name (``BadMediaError``, or ``MissingUpstreamError`` for an unbuilt dependency)."""
    message: str
    """What went wrong and, where known, the remedy."""
    time: str = field(default_factory=utc_now)
    """When it failed (UTC)."""
    source: dict[str, Any] | None = None
    """The media file's identity (size, mtime, clip bounds) when it failed: while it is unchanged, a
    rerun does not try the item again (unless ``retry_failed``)."""
    not_applicable: bool = False
    """The modality does not apply to the item (no audio track for an audio modality, or a required
    modality that does not apply or failed): not counted as a failure."""

    def record(self) -> dict[str, Any]:
        """The JSON record kept in the store."""
        return {"error": self.error, "message": self.message, "time": self.time,
                "source": dict(self.source) if self.source is not None else None,
                "not_applicable": self.not_applicable}


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """What one worker task did."""

    written: tuple[str, ...]
    """Ids written (complete)."""
    failed: tuple[ItemFailure, ...]
    """Items that failed as bad media."""
    seconds: float
    """Wall time of the task on its worker."""
    fragments: tuple[FragmentInfo, ...] = ()
    """Fragments the task wrote (uncommitted: the driver commits them)."""


@dataclass(kw_only=True)
class BuildReport:
    """Outcome of one ``build`` call."""

    modality: str
    """The modality built."""
    store: str
    """Store URL."""
    fingerprint: str
    """Config fingerprint of the modality."""
    planned: int = 0
    """Items that needed work."""
    written: list[str] = field(default_factory=list)
    """Ids written by this run."""
    skipped: list[str] = field(default_factory=list)
    """Ids already complete and unchanged (nothing to do)."""
    failed: list[ItemFailure] = field(default_factory=list)
    """Per-item failures of this run (bad media, missing upstream)."""
    not_applicable: list[ItemFailure] = field(default_factory=list)
    """Items the modality does not apply to, found by this run (no audio track, upstream failed)."""
    remain_failed: list[str] = field(default_factory=list)
    """Ids not tried again: their recorded failure is still current (same media); see ``retry_failed``."""
    seconds: float = 0.0
    """Wall time of the run (of the whole call when several modalities were built together)."""
    refused: str = ""
    """Dry run only: why the modality would be refused (nothing of it would be built)."""

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failed

    def summary(self) -> str:
        """One line for logs and the CLI."""
        extra = "".join(f", {n} {what}" for n, what in (
            (len(self.not_applicable), "not applicable"),
            (len(self.remain_failed), "remain failed (see status; --retry-failed)")) if n)
        return (f"{self.modality}: {len(self.written)} written, {len(self.skipped)} already complete, "
                f"{len(self.failed)} failed{extra} in {self.seconds:.1f} s -> {self.store}")


def make_extractor(name: str, config: ExtractorConfig | Mapping[str, Any] | None = None) -> Extractor[Any]:
    """An extractor by registry name, with a config object or plain data (validated strictly)."""
    cls = get_extractor_cls(name)
    if config is None or isinstance(config, ExtractorConfig):
        return cls(config)
    return cls(cls.config_type.from_dict(config))


def build(
    modality: str,
    items: Manifest | Sequence[MediaItem],
    store: FeatureStore | str | Path,
    *,
    config: ExtractorConfig | Mapping[str, Any] | None = None,
    **options: Any,
) -> BuildReport:
    """Build (or complete) one modality of ``store`` for the items of a manifest.

    Args:
        modality: Registered extractor name; also the store group name.
        items: The manifest (or its items).
        store: Store object or URL.
        config: Extractor config (object or plain data); None = defaults.
        **options: As for :func:`build_many` (executor, workers, overwrite, only, redo, videos_per_task,
            progress).

    Returns:
        What was written, skipped and failed.
    """
    return build_many([modality], items, store, configs={modality: config}, **options)[0]


def build_many(
    modalities: Sequence[str],
    items: Manifest | Sequence[MediaItem],
    store: FeatureStore | str | Path,
    *,
    configs: Mapping[str, ExtractorConfig | Mapping[str, Any] | None] | None = None,
    executor: SupportsSubmit | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    only: Sequence[str] | None = None,
    redo: Sequence[str] = (),
    videos_per_task: int | None = None,
    progress: bool = False,
    decode_budget_mb: int = DEFAULT_BUDGET_MB,
    modality_threads: int | None = None,
    compaction: CompactionPolicy | None = DEFAULT_COMPACTION,
    retry_failed: bool = False,
    dry_run: bool = False,
) -> list[BuildReport]:
    """Build several modalities together: one task per chunk of videos runs every modality in turn.

    Modalities are run in dependency order (a modality whose upstream is built in the same call comes
    after it, and reads what the same task just wrote). Within a task each item is decoded once for all
    modalities: one audio decode resampled to every model's rate, one video pass selecting every
    modality's frames (:func:`~affectcache.extractors.media.decode_memo.shared_decoding`); outputs equal those
    of separate builds. With ``modality_threads`` > 1 a task's modalities run side by side on pieces of
    its items (a modality starts on a piece once the modalities it reads are done with that piece), so
    CPU work such as MediaPipe overlaps other modalities' GPU forwards.
    An item that fails in an upstream modality is recorded as a missing-upstream failure downstream.

    Args:
        modalities: Registered extractor names (store group names), in any order.
        items: The manifest (or its items).
        store: Store object or URL.
        configs: Config (object or plain data) per modality; missing = defaults.
        executor: Anything with ``submit``; None = a local Dask cluster of ``workers`` processes
            (``workers=0`` runs in this process).
        workers: Local worker processes when ``executor`` is None; default one per core.
        overwrite: Delete the modalities first (needed when config, version or model changed).
        only: Restrict the run to these video ids.
        redo: Rebuild these ids even if complete.
        videos_per_task: Items per task (default: enough tasks to keep every worker busy).
        progress: Show a progress bar on stderr.
        decode_budget_mb: Decoded media (native-size frames, audio) a task may keep for its other
            modalities; items that do not fit are decoded again by each modality that needs them.
        modality_threads: Threads a task runs its (modality, piece of items) jobs on, dependencies
            waited for; None = 3 when the task uses a GPU, else 1 (on CPU they mostly compete for cores).
        compaction: When to compact a built modality's fragments at the end; None = never.
        retry_failed: Try again items whose recorded failure is still current (same media file); by
            default they are left alone and counted in ``remain_failed``.
        dry_run: Only plan: the reports list what would be built (``planned`` ids in ``written``),
            skipped as complete, left as failed-and-unchanged, not applicable upstream, or refused
            (``refused``); nothing is written, locked or run (an absent store plans on an empty one).

    Returns:
        One report per modality, in the order given.

    Raises:
        ProvenanceMismatchError: A modality exists with another identity and ``overwrite`` is false.
        LockHeldError: Another builder holds one of the modalities.
    """
    started = time.perf_counter()
    if len(set(modalities)) != len(modalities):
        raise StoreError(f"a modality is named twice in {list(modalities)}")
    extractors = {name: make_extractor(name, (configs or {}).get(name)) for name in modalities}
    order = dependency_order(extractors)
    todo_items = _select(list(items), only)
    if executor is None:  # local workers share this machine's devices and hub cache: check them first
        preflight(extractors.values())
    redo_ids = {validate_video_id(v) for v in redo}
    if dry_run:
        with _store_to_plan_on(store) as planning:
            plans = _dry_run(planning, extractors, order, todo_items, redo_ids, overwrite=overwrite,
                             retry_failed=retry_failed)
        return [plans[name] for name in modalities]
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    with contextlib.ExitStack() as locks:
        for name in order:
            locks.enter_context(ModalityLock(fs, name))
        jobs: dict[str, _Job] = {}
        for name in order:
            extractor = extractors[name]
            provenance = extractor.provenance(_upstream_fingerprints(fs, extractor))
            if overwrite:
                fs.begin_rebuild(name, provenance)  # beside the live data, switched when complete
            else:
                _init_modality(fs, name, provenance)
            report = BuildReport(modality=name, store=fs.url, fingerprint=provenance["config_fingerprint"])
            # Planning reads the catalog, never per-entry metadata.
            plan = _plan_items(report, todo_items, fs.catalog(name), redo_ids, retry_failed=retry_failed)
            jobs[name] = _Job(extractor=extractor, report=report, plan=plan)
        for job in jobs.values():
            _check_upstream(fs, job, jobs)
        work = [it for it in todo_items if any(it.video_id in job.planned_ids for job in jobs.values())]
        for job in jobs.values():
            job.report.planned = len(job.plan)
            logger.info("%s: %d to build, %d already complete", job.extractor.name, len(job.plan),
                        len(job.report.skipped))
        if work:
            with _executor(executor, workers, len(work)) as (ex, n_workers):
                per_task = videos_per_task or max(1, min(8, math.ceil(len(work) / (4 * n_workers))))
                threads = modality_threads or (3 if _uses_gpu(extractors) else 1)
                options = TaskOptions(decode_budget_mb=decode_budget_mb, modality_threads=threads)
                _run(fs, [jobs[n] for n in order], work, ex, per_task, progress, options)
        for name in order:
            fs.finish_rebuild(name)
            if compaction is not None:
                maybe_compact(fs, name, compaction)
    seconds = time.perf_counter() - started
    for job in jobs.values():
        job.report.seconds = seconds
        logger.info(job.report.summary())
    return [jobs[name].report for name in modalities]


def _plan_items(report: BuildReport, items: Sequence[MediaItem], state: CatalogState | None,
                redo_ids: set[str], *, retry_failed: bool) -> list[MediaItem]:
    """The items to build (all of them for a new modality, ``state`` None); complete unchanged ones go to
    ``report.skipped``, current failures to ``report.remain_failed``."""
    if state is None:
        return list(items)
    changed = state.changed_sources({it.video_id: it.source_info() for it in items if it.video_id in state})
    failures = {} if retry_failed else state.failures
    plan: list[MediaItem] = []
    for item in items:
        vid = item.video_id
        if vid not in redo_ids and vid in state and vid not in changed:
            report.skipped.append(vid)
        elif vid not in redo_ids and _failure_current(failures.get(vid), item):
            report.remain_failed.append(vid)
        else:
            plan.append(item)
    return plan


@contextlib.contextmanager
def _store_to_plan_on(store: FeatureStore | str | Path) -> Iterator[FeatureStore]:
    """The store read-only; an empty throw-away one when it does not exist yet (nothing is created)."""
    if isinstance(store, FeatureStore):
        yield store
        return
    try:
        yield FeatureStore(store, read_only=True)
    except FeatureNotFoundError:
        with tempfile.TemporaryDirectory(prefix="affectcache-plan-") as tmp:
            yield FeatureStore(f"{tmp}/empty.zarr")


def _dry_run(fs: FeatureStore, extractors: Mapping[str, Extractor[Any]], order: Sequence[str],
             items: Sequence[MediaItem], redo_ids: set[str], *, overwrite: bool,
             retry_failed: bool) -> dict[str, BuildReport]:
    """What :func:`build_many` would do, decided as it decides, without writing anything."""
    jobs: dict[str, _Job] = {}
    fingerprints: dict[str, str] = {}
    for name in order:
        extractor = extractors[name]
        provenance = extractor.provenance(_upstream_fingerprints(fs, extractor, planned=fingerprints))
        report = BuildReport(modality=name, store=fs.url, fingerprint=provenance["config_fingerprint"])
        fingerprints[name] = report.fingerprint
        fresh = overwrite or not fs.has_modality(name)
        if not fresh:
            diffs = identity_differences(fs.provenance(name), json.loads(json.dumps(dict(provenance))))
            # A modality with no complete entry is re-configured by a real run (nothing to lose).
            if diffs and fs.videos(name):
                report.refused = (f"built differently: {'; '.join(diffs)}; rebuild it (`affectcache rebuild "
                                  f"{name} ...` or --overwrite)")
            fresh = bool(diffs)
        plan = [] if report.refused else _plan_items(report, items, None if fresh else fs.catalog(name),
                                                     redo_ids, retry_failed=retry_failed)
        jobs[name] = _Job(extractor=extractor, report=report, plan=plan)
    for job in jobs.values():
        _check_upstream(fs, job, jobs, record=False)
    for job in jobs.values():
        job.report.planned = len(job.plan)
        job.report.written = [it.video_id for it in job.plan]
    return {name: job.report for name, job in jobs.items()}


def preflight(extractors: Iterable[Extractor[Any]]) -> None:
    """Refuse, before anything is created, a device this machine lacks or a hub model that is neither
    cached nor reachable (one line each, naming the remedies)."""
    for extractor in extractors:
        extractor.config.check_device()
        for model in hub_models(extractor):
            check_model_available(model)


def _init_modality(fs: FeatureStore, name: str, provenance: Mapping[str, Any]) -> None:
    """Create or check the modality; one with no committed entry is re-configured (nothing to lose)."""
    try:
        fs.init_modality(name, provenance)
    except ProvenanceMismatchError:
        if fs.videos(name):
            raise
        logger.info("%s: no complete entry yet, so it is re-created with the new config", name)
        fs.init_modality(name, provenance, overwrite=True)


@dataclass(kw_only=True)
class _Job:
    """One modality of a build, as planned on the driver."""

    extractor: Extractor[Any]
    report: BuildReport
    plan: list[MediaItem]

    @property
    def planned_ids(self) -> set[str]:
        return {it.video_id for it in self.plan}


def dependency_order(extractors: Mapping[str, Extractor[Any]]) -> list[str]:
    """Names ordered so that a modality comes after the ones it requires (among those given)."""
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in trail:
            raise StoreError(f"modality requirements form a cycle: {' -> '.join((*trail, name))}")
        for required in extractors[name].upstream_modalities():
            if required in extractors:
                visit(required, (*trail, name))
        ordered.append(name)

    for name in extractors:
        visit(name, ())
    return ordered


def _select(items: list[MediaItem], only: Sequence[str] | None) -> list[MediaItem]:
    seen: set[str] = set()
    for item in items:
        validate_video_id(item.video_id)  # before anything is written
        if item.video_id in seen:  # two tasks would write the same entry at once
            raise StoreError(f"video id {item.video_id!r} appears twice in the items; ids must be unique")
        seen.add(item.video_id)
    if only is None:
        return items
    wanted = {validate_video_id(v) for v in only}
    unknown = sorted(wanted - {it.video_id for it in items})
    if unknown:
        known = [it.video_id for it in items]
        raise StoreError("--only names ids that are not in the manifest: "
                         + ", ".join(f"{v!r}{did_you_mean(v, known)}" for v in unknown))
    return [it for it in items if it.video_id in wanted]


def _failure_current(record: Mapping[str, Any] | None, item: MediaItem) -> bool:
    """A recorded failure made from the very media file the manifest names now (older records without
    the file's identity are retried)."""
    if not record or not record.get("source"):
        return False
    return not source_changed(record["source"], item.source_info())


def _upstream_fingerprints(fs: FeatureStore, extractor: Extractor[Any],
                           planned: Mapping[str, str] | None = None) -> dict[str, str]:
    fingerprints = {}
    for name in extractor.upstream_modalities():
        if planned and name in planned:  # a dry run: planned in the same call, not created
            fingerprints[name] = planned[name]
            continue
        if not fs.has_modality(name):
            raise FeatureNotFoundError(f"{extractor.name} needs modality {name!r}, which is not in "
                                       f"{fs.url}; build it first (`affectcache extract {name} ...`)")
        fingerprints[name] = str(fs.provenance(name)["config_fingerprint"])
    return fingerprints


def _check_upstream(fs: FeatureStore, job: _Job, jobs: Mapping[str, _Job], *, record: bool = True) -> None:
    """Drop (and ``record``) planned items whose upstream entry is neither complete nor built in this run."""
    required = job.extractor.upstream_modalities()
    if not required:
        return
    # (An upstream planned in a dry run is not in the store yet.)
    available = {name: (set(fs.videos(name)) if fs.has_modality(name) else set())
                 | (jobs[name].planned_ids if name in jobs else set()) for name in required}
    upstream_failures = {name: fs.failures(name) for name in required}
    ready, missing = [], []
    for item in job.plan:
        absent = [name for name, ids in available.items() if item.video_id not in ids]
        if not absent:
            ready.append(item)
            continue
        # Say why the upstream entry is missing: its own failure (the real cause) when it has one.
        causes = [(name, upstream_failures[name].get(item.video_id)) for name in absent]
        failed_up = [(name, rec) for name, rec in causes if rec]
        if failed_up:
            missing.append(ItemFailure(
                video_id=item.video_id, error=MISSING_UPSTREAM, source=dict(item.source_info()),
                not_applicable=True, message="; ".join(
                    f"{name} {'does not apply' if rec.get('not_applicable') else 'failed'}: "
                    f"{rec.get('message')}" for name, rec in failed_up)))
        else:
            missing.append(ItemFailure(video_id=item.video_id, error=MISSING_UPSTREAM,
                                       message=f"{item.video_id}: {absent} not built for this item; "
                                               f"build them first (`affectcache extract {' '.join(absent)} "
                                               "...`)"))
    job.plan[:] = ready
    job.report.failed.extend(f for f in missing if not f.not_applicable)
    job.report.not_applicable.extend(f for f in missing if f.not_applicable)
    if missing and record:
        fs.record_failures(job.extractor.name, {f.video_id: f.record() for f in missing})


@contextlib.contextmanager
def _executor(executor: SupportsSubmit | None, workers: int | None,
              n_items: int) -> Iterator[tuple[SupportsSubmit, int]]:
    if executor is not None:
        yield executor, max(1, workers or default_worker_count())
        return
    n = default_worker_count() if workers is None else workers
    if n <= 0:
        yield InProcessExecutor(), 1
        return
    with local_dask_client(min(n, n_items)) as client:
        yield client, min(n, n_items)


def _uses_gpu(extractors: Mapping[str, Extractor[Any]]) -> bool:
    return any(type(ext.config).uses_gpu and ext.config.device.startswith("cuda")
               for ext in extractors.values())


def _run(fs: FeatureStore, jobs: list[_Job], work: list[MediaItem], executor: SupportsSubmit,
         per_task: int, progress: bool, options: TaskOptions) -> None:
    specs = [(job.extractor.name, type(job.extractor).__module__,
              json.dumps(job.extractor.config.to_dict(), sort_keys=True)) for job in jobs]
    gpu = _uses_gpu({job.extractor.name: job.extractor for job in jobs})
    todo = {job.extractor.name: job.planned_ids for job in jobs}
    by_name = {job.extractor.name: job for job in jobs}
    chunks = [work[i: i + per_task] for i in range(0, len(work), per_task)]
    futures = [submit_task(executor, run_task, specs,
                           {name: sorted(ids & {it.video_id for it in chunk}) for name, ids in todo.items()},
                           chunk, fs, options, gpu=gpu)
               for chunk in chunks]
    label = "+".join(by_name)
    with _progress_bar(progress, label, len(work)) as advance:
        try:
            for future in as_completed(futures):
                results: dict[str, TaskResult] = future.result()
                for name, result in results.items():
                    # The commit point of the task's entries (and its failure records): one record, which
                    # a stop never cuts in half.
                    with signals_deferred():
                        fs.commit(name, result.fragments,
                                  failures={f.video_id: f.record() for f in result.failed})
                    report = by_name[name].report
                    report.written.extend(result.written)
                    report.failed.extend(f for f in result.failed if not f.not_applicable)
                    report.not_applicable.extend(f for f in result.failed if f.not_applicable)
                    for failure in result.failed:
                        if failure.not_applicable:
                            logger.info("%s: not applicable to %s: %s", name, failure.video_id,
                                        failure.message)
                        else:
                            logger.warning("%s: failed %s: %s", name, failure.video_id, failure.message)
                advance(len({vid for r in results.values() for vid in (*r.written,
                                                                       *(f.video_id for f in r.failed))}))
        except BaseException as exc:
            cancel_all(futures)
            for name, result in (getattr(exc, "affectcache_partial", None) or {}).items():
                fs.commit(name, result.fragments, failures={f.video_id: f.record() for f in result.failed})
                by_name[name].report.written.extend(result.written)
            raise


@contextlib.contextmanager
def _progress_bar(enabled: bool, name: str, total: int) -> Iterator[Any]:
    """A rich progress bar on a terminal; otherwise a log line at most every ``LOG_EVERY_S`` seconds."""
    if not enabled:
        state = {"done": 0, "last": time.monotonic(), "start": time.monotonic()}

        def log_progress(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= LOG_EVERY_S and state["done"] < total:
                state["last"] = now
                logger.info("%s: %d/%d items done (%.0f s)", name, state["done"], total, now - state["start"])

        yield log_progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(f"extract {name}", total=total)
        yield lambda n: bar.advance(task, n)


# ---- worker side ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _worker_extractor(name: str, module: str, config_json: str) -> Extractor[Any]:
    """One extractor per process and config: weights load once however many tasks arrive."""
    apply_verbosity()  # worker processes follow the verbosity the command line exported
    # Importing the defining module registers extractors that are neither built in nor entry points
    # (e.g. defined in a user's script) on workers that never imported it.
    importlib.import_module(module)
    return make_extractor(name, json.loads(config_json))


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """How a worker runs a task (the same for every task of a build)."""

    decode_budget_mb: int = DEFAULT_BUDGET_MB
    """Decoded media the task may keep for its other modalities (see ``build_many``)."""
    modality_threads: int = 1
    """Threads for the task's (modality, piece of items) jobs; 1 = one modality after another."""


def run_task(specs: Sequence[tuple[str, str, str]], todo: Mapping[str, Sequence[str]],
             items: Sequence[MediaItem], fs: FeatureStore,
             options: TaskOptions = TaskOptions()) -> dict[str, TaskResult]:
    """Extract and write a chunk of items for each modality in ``specs`` (runs on a worker).

    ``specs`` holds ``(name, defining module, config JSON)`` per modality in dependency order, and
    ``todo`` the ids each modality must build. Each item is decoded once for all the modalities (within
    the decode budget). Only bad media is caught; an item that failed upstream in this task is a
    missing-upstream failure downstream.
    """
    extractors = {name: _worker_extractor(name, module, config_json) for name, module, config_json in specs}
    # Per file (several items may be clips of one), what the modalities that build it this time decode.
    wanted = {name: set(todo.get(name, ())) for name in extractors}
    needs: dict[str, MediaNeeds] = {}
    for item in items:
        needs[item.path] = combined_needs([needs.get(item.path, NO_MEDIA), *(
            ext.media_needs() for name, ext in extractors.items() if item.video_id in wanted[name])])
    results: dict[str, TaskResult] = {}
    # What this task produced, per modality: downstream modalities read it here (not yet committed).
    produced: dict[str, dict[str, FeatureArray]] = {name: {} for name in extractors}
    finished: list[tuple[str, TaskResult]] = []
    try:
        with shared_decoding(needs, budget_mb=options.decode_budget_mb):
            if options.modality_threads <= 1 or len(extractors) == 1:
                for name, extractor in extractors.items():
                    results[name] = _run_modality(extractor, todo.get(name, ()), items, fs, results, produced)
                    finished.append((name, results[name]))
            else:
                _run_side_by_side(extractors, todo, items, fs, options.modality_threads, results, produced,
                                  finished)
    except Exception as exc:
        # A bug stops the run, but what finished before it is committed by the driver (the exception
        # carries it; exceptions pickle their attributes, so this works across Dask workers too).
        exc.affectcache_partial = _merge_results(finished)  # type: ignore[attr-defined]
        raise
    return results


def _merge_results(parts: Sequence[tuple[str, TaskResult]]) -> dict[str, TaskResult]:
    merged: dict[str, TaskResult] = {}
    for name, r in parts:
        old = merged.get(name)
        merged[name] = r if old is None else TaskResult(
            written=old.written + r.written, failed=old.failed + r.failed, seconds=old.seconds + r.seconds,
            fragments=old.fragments + r.fragments)
    return merged


PIPELINE_PIECES = 2
"""Side by side, a task's items are split into this many pieces, so a modality can start on the first
piece while the one it reads works on the next (``clip-face``'s GPU forward beside ``face``'s MediaPipe)."""


def _run_side_by_side(extractors: Mapping[str, Extractor[Any]], todo: Mapping[str, Sequence[str]],
                      items: Sequence[MediaItem], fs: FeatureStore, threads: int,
                      results: dict[str, TaskResult], produced: dict[str, dict[str, FeatureArray]],
                      finished: list[tuple[str, TaskResult]]) -> None:
    """Run (modality, piece of the items) jobs on a thread pool, each as soon as the same piece of every
    modality it reads (in this task) and its own previous piece are done."""
    size = max(1, math.ceil(len(items) / PIPELINE_PIECES))
    pieces = [items[i: i + size] for i in range(0, len(items), size)]
    reads = {name: set(ext.upstream_modalities()) & set(extractors) for name, ext in extractors.items()}
    pending = [(name, p) for p in range(len(pieces)) for name in extractors]
    done: dict[tuple[str, int], TaskResult] = {}
    with cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="affectcache-modality") as pool:
        running: dict[cf.Future[TaskResult], tuple[str, int]] = {}
        try:
            while pending or running:
                for name, p in [job for job in pending if _ready(job, reads, done)]:
                    pending.remove((name, p))
                    upstream = {up: done[(up, p)] for up in reads[name]}
                    # A copy of this context per thread carries the task's decode memo into it.
                    future = pool.submit(contextvars.copy_context().run, _run_modality, extractors[name],
                                         todo.get(name, ()), pieces[p], fs, upstream, produced)
                    running[future] = (name, p)
                ready, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in ready:
                    job = running.pop(future)
                    done[job] = future.result()
                    finished.append((job[0], done[job]))
        except BaseException:
            pending.clear()  # a bug stops the task: start nothing more; running jobs finish
            for future, job in running.items():
                if future.exception() is None:
                    finished.append((job[0], future.result()))
            raise
    for name in extractors:
        parts = [done[(name, p)] for p in range(len(pieces))]
        results[name] = TaskResult(written=tuple(v for r in parts for v in r.written),
                                   failed=tuple(f for r in parts for f in r.failed),
                                   seconds=sum(r.seconds for r in parts),
                                   fragments=tuple(x for r in parts for x in r.fragments))


def _ready(job: tuple[str, int], reads: Mapping[str, set[str]], done: Mapping[tuple[str, int], TaskResult],
           ) -> bool:
    name, piece = job
    return (piece == 0 or (name, piece - 1) in done) and all((up, piece) in done for up in reads[name])


def _run_modality(extractor: Extractor[Any], wanted_ids: Sequence[str], items: Sequence[MediaItem],
                  fs: FeatureStore, upstream_results: Mapping[str, TaskResult],
                  produced: dict[str, dict[str, FeatureArray]] | None = None) -> TaskResult:
    """One modality over the task's items it must build; items whose upstream failed in this task are
    missing-upstream failures."""
    started = time.perf_counter()
    wanted = set(wanted_ids)
    failed_upstream = {name: {f.video_id for f in result.failed} for name, result in upstream_results.items()}
    blocked: list[ItemFailure] = []
    ready: list[MediaItem] = []
    for item in items:
        if item.video_id not in wanted:
            continue
        broken = [up for up in extractor.upstream_modalities()
                  if item.video_id in failed_upstream.get(up, set())]
        if broken:
            causes = {f.video_id: f for up in broken for f in upstream_results[up].failed}
            cause = causes[item.video_id]
            blocked.append(ItemFailure(
                video_id=item.video_id, error=MISSING_UPSTREAM, source=dict(item.source_info()),
                not_applicable=True,
                message=f"{'+'.join(broken)} {'does not apply' if cause.not_applicable else 'failed'}: "
                        f"{cause.message}"))
        else:
            ready.append(item)
    produced = {} if produced is None else produced
    written, failed, fragment = (_extract_and_write(extractor, ready, fs, produced) if ready
                                 else ([], [], None))
    failed.extend(blocked)
    return TaskResult(written=tuple(written), failed=tuple(failed), seconds=time.perf_counter() - started,
                      fragments=(fragment,) if fragment is not None else ())


def _extract_and_write(extractor: Extractor[Any], items: Sequence[MediaItem], fs: FeatureStore,
                       produced: dict[str, dict[str, FeatureArray]],
                       ) -> tuple[list[str], list[ItemFailure], FragmentInfo | None]:
    """Extract ``items`` and write the results as one fragment (not committed: the driver does)."""
    upstream = [_read_upstream(fs, extractor, item, produced) for item in items]
    written: list[str] = []
    failed: list[ItemFailure] = []
    try:
        results = extractor.extract_batch(items, upstream)
    except BadMediaError:
        # Retry item by item so one bad file does not take the batch's good items with it.
        results = []
        for item, ups in zip(items, upstream, strict=True):
            try:
                results.append(extractor.extract(item, ups))
            except BadMediaError as exc:
                failed.append(ItemFailure(video_id=item.video_id, error=type(exc).__name__,
                                          message=str(exc), source=dict(item.source_info()),
                                          not_applicable=isinstance(exc, MissingStreamError)))
    by_id = {item.video_id: item for item in items}
    to_write = []
    for feats in results:
        asked = by_id.get(feats.video_id)
        if asked is None:
            raise ConfigError(f"{extractor.name} returned features for {feats.video_id!r}, which it was "
                              "not asked for")
        to_write.append((feats, asked.source_info()))
        written.append(feats.video_id)
    fragment = fs.write_fragment(extractor.name, to_write) if to_write else None
    mine = produced.setdefault(extractor.name, {})
    for (feats, _), entry in zip(to_write, fragment.entries if fragment else (), strict=True):
        # Downstream sees exactly what a store read would give (attrs as stored JSON).
        mine[feats.video_id] = feats if feats.attrs == entry.attrs else dataclasses.replace(
            feats, attrs=entry.attrs)
    return written, failed, fragment


def _read_upstream(fs: FeatureStore, extractor: Extractor[Any], item: MediaItem,
                   produced: Mapping[str, Mapping[str, FeatureArray]]) -> Upstream:
    """Upstream entries: what this task just produced (not committed yet), else from the store."""
    out = {}
    for name in extractor.upstream_modalities():
        here = produced.get(name, {}).get(item.video_id)
        out[name] = here if here is not None else fs.read(name, item.video_id)
    return out
