"""``run_search``: a search's trials as tasks on any executor (a Dask cluster, or this process).

The driver plans trials (config and deterministic id), skips those with a ``trial.json`` from an earlier
call, submits the rest (``resources={"GPU": 1}`` on Dask when the trial trains on CUDA), and as each one
finishes writes its ``trial.json``, ``search_results.csv`` and ``best_trial.json`` (atomically) and logs
one line. A trial whose values make an invalid config, or whose training raises a trial error
(:data:`~affectcache.trainers.search.trials.TRIAL_ERRORS`), is recorded as failed and the search goes on;
any other exception cancels the pending trials and propagates. A killed search resumes by running it
again: finished trials are not retrained, a trial killed mid-training resumes from its ``last.pt``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.atomic import atomic_write_json
from affectcache.extractors.core.errors import ConfigError
from affectcache.store.errors import ProvenanceMismatchError
from affectcache.store.executors import (
    InProcessExecutor,
    as_completed,
    cancel_all,
    default_worker_count,
    is_dask_client,
    local_dask_client,
    submit_task,
)
from affectcache.store.manifest import manifest_digest
from affectcache.trainers.search.spec import PlannedTrial, SearchSpec, check_base, plan_trial, trial_fields
from affectcache.trainers.search.strategies import STRATEGIES
from affectcache.trainers.search.trials import (
    BEST_JSON,
    RESULTS_CSV,
    TrialRecord,
    TrialTask,
    best_trial,
    read_trial_records,
    run_trial,
    trial_dir,
    write_results,
    write_trial_record,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from affectcache.store.executors import SupportsSubmit
    from affectcache.store.manifest import Manifest
    from affectcache.trainers.config import TrainerConfig
    from affectcache.trainers.search.spec import Params

logger = logging.getLogger(__name__)

SEARCH_FORMAT = "affectcache-search/1"
SEARCH_JSON = "search.json"


@dataclass(frozen=True, kw_only=True)
class SearchReport:
    """A finished search."""

    out_dir: Path
    """The search folder."""
    records: list[TrialRecord]
    """Every trial of the search, in plan order."""
    best: TrialRecord | None
    """The trial with the best val CCC mean (None when no trial finished)."""
    trained: int
    """Trials trained in this call (the others were finished by an earlier call)."""


def run_search(model: str, spec: SearchSpec, store: str, manifest: Manifest, out_dir: str | Path, *,
               executor: SupportsSubmit | None = None, workers: int | None = None,
               torch_threads: int | None = None, overwrite: bool = False, retry_failed: bool = False,
               on_trial: Callable[[str], None] | None = None) -> SearchReport:
    """Run the search ``spec`` over ``model``'s config (see the module docstring).

    Args:
        model: Registered VA model (``ras-face``, ``raav``, ...).
        spec: The strategy and searched values.
        store: Feature store path or URL (each trial opens it read-only).
        manifest: The items and their splits.
        out_dir: Search folder.
        executor: Anything with ``submit`` (a ``distributed.Client``); None = a local Dask cluster of
            ``workers`` single-threaded processes (0 = one trial after another in this process).
        workers: Local worker processes when ``executor`` is None (default: one per core).
        torch_threads: ``torch.set_num_threads`` in each trial; default 1 on Dask workers (they share the
            machine's cores), torch's own default in this process.
        overwrite: Delete a search folder that holds another search.
        retry_failed: Run failed trials again (by default a rerun keeps their record).
        on_trial: Called with the progress line of each finished trial (default: logged at INFO).

    Raises:
        ConfigError: Bad spec, model, preset or field; ``out_dir`` holds another search (no ``overwrite``).
    """
    check_base(model, spec)
    strategy = STRATEGIES.get(spec.strategy)
    if spec.strategy == "tpe":
        from affectcache.trainers.search.strategies import import_optuna

        import_optuna()  # refuse before any folder or cluster is made
    folder = Path(out_dir)
    identity = {"format": SEARCH_FORMAT, "model": model, "spec": spec.to_dict(),
                "manifest": manifest_digest(manifest)}
    _prepare_folder(folder, identity, overwrite=overwrite)
    planned = strategy.planned(spec)
    evaluator = _Evaluator(model=model, spec=spec, store=store, manifest=manifest, out_dir=folder,
                           planned=planned, retry_failed=retry_failed, on_trial=on_trial)
    with _executor(executor, workers, planned, gpu=evaluator.uses_gpu) as (ex, parallel):
        evaluator.executor = ex
        evaluator.torch_threads = torch_threads if torch_threads is not None else (
            1 if is_dask_client(ex) else None)
        strategy.run(spec, evaluator, folder, parallel)
    records = evaluator.in_order()
    write_results(folder, records, spec.params)
    return SearchReport(out_dir=folder, records=records, best=best_trial(records), trained=evaluator.trained)


def _prepare_folder(folder: Path, identity: dict[str, Any], *, overwrite: bool) -> None:
    marker = folder / SEARCH_JSON
    if marker.exists():
        old = json.loads(marker.read_text(encoding="utf-8"))
        if old == identity and not overwrite:
            return  # the same search: resume it
        if not overwrite:
            changed = sorted(k for k in identity if old.get(k) != identity[k])
            raise ConfigError(f"{folder} holds another search ({', '.join(changed)} differ); use another "
                              "--out, or --overwrite to delete it")
        shutil.rmtree(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty and holds no search ({SEARCH_JSON}); use another --out")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, identity)


@contextlib.contextmanager
def _executor(executor: SupportsSubmit | None, workers: int | None, planned: int, *, gpu: bool,
              ) -> Iterator[tuple[SupportsSubmit, int]]:
    """The executor and how many trials it runs at once."""
    if executor is not None:
        parallel = workers or _cluster_slots(executor, gpu) or default_worker_count()
        yield executor, max(1, parallel)
        return
    n = min(default_worker_count() if workers is None else workers, planned)
    if n <= 0:
        yield InProcessExecutor(), 1
        return
    # Local GPU trials: every worker offers one GPU slot (the trials share this machine's GPU).
    with local_dask_client(n, resources={"GPU": 1} if gpu else None) as client:
        yield client, n


def _cluster_slots(executor: SupportsSubmit, gpu: bool) -> int:
    """Trials a Dask cluster runs at once: its GPU slots for GPU trials, else its worker threads."""
    if not is_dask_client(executor):
        return 0
    workers = executor.scheduler_info()["workers"].values()  # type: ignore[attr-defined]
    if gpu:
        return int(sum(w.get("resources", {}).get("GPU", 0) for w in workers))
    return int(sum(w.get("nthreads", 1) for w in workers))


def _check_finished_inputs(out_dir: Path, previous: dict[str, TrialRecord], store: str,
                           manifest: Manifest) -> None:
    """Refuse to reuse finished trials trained on store inputs that have changed since (a rebuilt input
    modality, new labels): their scores would be compared with trials trained on the new numbers. One check
    per distinct recorded inputs (trials of a search usually share them)."""
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.va import check_run_inputs, read_run

    seen: set[str] = set()
    fs: FeatureStore | None = None
    for trial_id, record in previous.items():
        run_json = trial_dir(out_dir, trial_id) / "run.json"
        if record.status != "done" or not run_json.exists():
            continue
        recorded = json.loads(run_json.read_text(encoding="utf-8"))
        key = json.dumps([recorded.get("inputs"), recorded.get("splits")], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if fs is None:
            fs = FeatureStore(store, read_only=True)
        try:
            check_run_inputs(read_run(run_json.parent), fs, manifest)
        except ProvenanceMismatchError as exc:
            raise ProvenanceMismatchError(
                f"{out_dir}: finished trial {trial_id} was trained on other store inputs than the store has "
                f"now ({exc}); rerun the search with --overwrite, or into another --out") from exc


class _Evaluator:
    """Runs batches of trials for a strategy (the ``evaluate`` it is given)."""

    def __init__(self, *, model: str, spec: SearchSpec, store: str, manifest: Manifest, out_dir: Path,
                 planned: int, retry_failed: bool, on_trial: Callable[[str], None] | None) -> None:
        self.model, self.spec, self.store, self.manifest, self.out_dir = model, spec, store, manifest, out_dir
        self.planned, self.retry_failed, self.on_trial = planned, retry_failed, on_trial
        self.executor: SupportsSubmit = InProcessExecutor()
        self.torch_threads: int | None = None
        self.previous = read_trial_records(out_dir)
        _check_finished_inputs(out_dir, self.previous, store, manifest)
        self.records: dict[str, TrialRecord] = {}
        """This search's finished trials."""
        self.order: dict[str, None] = {}
        """This search's trial ids in the order they were first planned (the order of the results)."""
        self.trained = 0
        self.start = time.monotonic()
        # Trials train where the preset + base put them (a searched device is unusual; the first value).
        device = trial_fields(model, spec, {k: v[0] for k, v in spec.params.items()}).get("device")
        self.uses_gpu = str(device).startswith("cuda")

    def __call__(self, batch: Sequence[Params]) -> list[TrialRecord]:
        plans = [plan_trial(self.model, self.spec, params) for params in batch]
        self.order.update(dict.fromkeys(p.trial_id for p in plans))
        futures: list[Any] = []
        for plan in {p.trial_id: p for p in plans}.values():
            cached = self.records.get(plan.trial_id) or self._reusable(plan.trial_id)
            if cached is not None:
                self.records.setdefault(plan.trial_id, cached)
            elif plan.config is None:
                self._finish(TrialRecord(trial_id=plan.trial_id, params=plan.params, status="failed",
                                         error=f"ConfigError: {plan.error}"))
            else:
                futures.append(self._submit(plan, plan.config))
        try:
            for future in as_completed(futures):
                self._finish(future.result())
                self.trained += 1
        except BaseException:
            cancel_all(futures)
            raise
        return [self.records[p.trial_id] for p in plans]

    def in_order(self) -> list[TrialRecord]:
        """The finished trials in plan order."""
        return [self.records[i] for i in self.order if i in self.records]

    def _reusable(self, trial_id: str) -> TrialRecord | None:
        record = self.previous.get(trial_id)
        if record is None or (record.status == "failed" and self.retry_failed):
            return None
        return record

    def _submit(self, plan: PlannedTrial, config: TrainerConfig) -> Any:
        task = TrialTask(model=self.model, trial_id=plan.trial_id, params=plan.params,
                         config=config.to_dict(), store=self.store, manifest=self.manifest,
                         run_dir=str(trial_dir(self.out_dir, plan.trial_id)),
                         torch_threads=self.torch_threads)
        return submit_task(self.executor, run_trial, task, gpu=self.uses_gpu)

    def _finish(self, record: TrialRecord) -> None:
        write_trial_record(self.out_dir, record)
        self.records[record.trial_id] = record
        write_results(self.out_dir, self.in_order(), self.spec.params)
        left = max(self.planned - len(self.records), 0)
        scores = " ".join(f"{k.removeprefix('val_ccc_')} {v:.4f}" for k, v in record.scores.items())
        line = (f"trial {record.trial_id} {record.status}"
                f"{': val CCC ' + scores if record.status == 'done' else ': ' + str(record.error)}"
                f" ({record.seconds or 0:.1f} s; {time.monotonic() - self.start:.0f} s elapsed, "
                f"{left} trial(s) left)")
        if self.on_trial is not None:
            self.on_trial(line)
        else:
            logger.info("%s", line)


__all__ = ["BEST_JSON", "RESULTS_CSV", "SearchReport", "run_search"]
