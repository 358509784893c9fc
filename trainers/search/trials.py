"""One trial of a search (a normal VA run folder) and the search's result files.

Layout of a search folder::

    search.json               the search (model, spec, manifest digest): a rerun must match it
    search_results.csv        one row per finished trial, in plan order: trial_id, status, the searched
                              values, val CCC per label and their mean, best_epoch, epochs, seconds, error
    best_trial.json           the trial with the best val CCC mean (its values, scores, run folder)
    trials/<trial-id>/        a VA run folder (run.json, config.yaml, checkpoints, results, ...) plus
        trial.json            the trial's record, written when it finished (done or failed)
    optuna.journal            (tpe) the optuna study, file-based

Every file is written atomically as trials finish, so a killed search leaves consistent files and a
rerun skips the trials that have a ``trial.json``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.atomic import atomic_write_json, atomic_write_text
from affectcache.extractors.core.errors import ConfigError
from affectcache.store.errors import StoreError
from affectcache.store.manifest import Manifest
from affectcache.trainers.search.spec import Params

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

TRIALS_DIR = "trials"
TRIAL_FILE = "trial.json"
RESULTS_CSV = "search_results.csv"
BEST_JSON = "best_trial.json"
OBJECTIVE = "val_ccc_mean"
"""What the search maximises: the mean over labels of the validation CCC of the trial's best epoch."""

TRIAL_ERRORS: tuple[type[Exception], ...] = (ConfigError, StoreError)
"""Errors that fail one trial (a bad value, data the config cannot use); any other exception is a bug
and stops the search, as the build runner stops on anything but bad media."""


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """The outcome of one trial."""

    trial_id: str
    """Deterministic id (the folder name under ``trials/``)."""
    params: Params
    """The searched fields' values."""
    status: str
    """``done`` or ``failed``."""
    scores: dict[str, float] = field(default_factory=dict)
    """Validation CCC per label (``val_ccc_<label>``) and their mean (``val_ccc_mean``)."""
    best_epoch: int | None = None
    """The selected epoch."""
    epochs: int | None = None
    """Epochs run (early stopping may end before the configured number)."""
    seconds: float | None = None
    """Wall time of the trial's last training call."""
    error: str | None = None
    """Why a failed trial failed (``Type: message``)."""

    @property
    def objective(self) -> float:
        """The value maximised (NaN for failed trials or a non-finite score)."""
        value = self.scores.get(OBJECTIVE, math.nan) if self.status == "done" else math.nan
        return value if math.isfinite(value) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(**dict(data))


@dataclass(frozen=True, kw_only=True)
class TrialTask:
    """Everything a worker needs to run one trial (pickled to Dask workers)."""

    model: str
    """Registered model name."""
    trial_id: str
    """The trial's id."""
    params: Params
    """The searched values (copied into the record)."""
    config: dict[str, Any]
    """The full trial config."""
    store: str
    """Feature store URL or path, opened read-only on the worker."""
    manifest: Manifest
    """The manifest (splits)."""
    run_dir: str
    """The trial's run folder."""
    torch_threads: int | None = None
    """``torch.set_num_threads`` on the worker (None: leave torch's default)."""


def run_trial(task: TrialTask) -> TrialRecord:
    """Train one trial into its run folder (resuming a killed one) and return its record (runs on a
    worker). Trial errors (:data:`TRIAL_ERRORS`, and CUDA out-of-memory) give a failed record; anything
    else propagates."""
    import torch

    threads = torch.get_num_threads()
    if task.torch_threads is not None:
        torch.set_num_threads(task.torch_threads)
    try:
        return _train_trial(task)
    finally:
        torch.set_num_threads(threads)  # an in-process trial leaves the caller's thread count alone


def _train_trial(task: TrialTask) -> TrialRecord:
    import torch

    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.data.config import VAConfig
    from affectcache.trainers.models import get_model_spec
    from affectcache.trainers.va import train_va

    start = time.monotonic()
    try:
        config = get_model_spec(task.model).config_type.from_dict(task.config)
        if not isinstance(config, VAConfig):
            raise ConfigError(f"{task.model} is not a VA model; search trains VA models (see `affectcache "
                              "train --help`)")
        run = train_va(task.model, FeatureStore(task.store, read_only=True), task.manifest, task.run_dir,
                       config=config)
    except (*TRIAL_ERRORS, torch.cuda.OutOfMemoryError) as exc:
        return TrialRecord(trial_id=task.trial_id, params=task.params, status="failed",
                           seconds=time.monotonic() - start, error=f"{type(exc).__name__}: {exc}")
    val = run.record["results"].get(config.val_split, {})
    scores = {f"val_ccc_{label}": float(val[f"ccc_{label}"]["value"]) for label in config.labels
              if f"ccc_{label}" in val}
    scores[OBJECTIVE] = float(val["va_score"]) if "va_score" in val else math.nan
    fit = run.record["fit"]
    return TrialRecord(trial_id=task.trial_id, params=task.params, status="done", scores=scores,
                       best_epoch=int(fit["best_epoch"]), epochs=int(fit["epochs_run"]),
                       seconds=time.monotonic() - start)


def trial_dir(out_dir: Path, trial_id: str) -> Path:
    return out_dir / TRIALS_DIR / trial_id


def read_trial_records(out_dir: Path) -> dict[str, TrialRecord]:
    """The records of the trials that finished in earlier calls of the search."""
    records: dict[str, TrialRecord] = {}
    for path in sorted((out_dir / TRIALS_DIR).glob(f"*/{TRIAL_FILE}")):
        record = TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        records[record.trial_id] = record
    return records


def write_trial_record(out_dir: Path, record: TrialRecord) -> None:
    folder = trial_dir(out_dir, record.trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / TRIAL_FILE, record.to_dict())


def best_trial(records: Iterable[TrialRecord]) -> TrialRecord | None:
    """The finished trial with the highest objective (the first one on ties); None if none finished."""
    best: TrialRecord | None = None
    for record in records:
        if not math.isnan(record.objective) and (best is None or record.objective > best.objective):
            best = record
    return best


def write_results(out_dir: Path, records: Iterable[TrialRecord], param_names: Iterable[str]) -> None:
    """``search_results.csv`` and ``best_trial.json`` from the records so far (both atomic)."""
    records = list(records)
    params = list(param_names)
    score_keys = list(dict.fromkeys(k for r in records for k in r.scores if k != OBJECTIVE))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial_id", "status", *params, *score_keys, OBJECTIVE, "best_epoch", "epochs",
                     "seconds", "error"])
    for r in records:
        writer.writerow([r.trial_id, r.status, *(json.dumps(r.params.get(p)) for p in params),
                         *(_number(r.scores.get(k)) for k in score_keys), _number(r.scores.get(OBJECTIVE)),
                         _number(r.best_epoch), _number(r.epochs),
                         "" if r.seconds is None else f"{r.seconds:.1f}", r.error or ""])
    atomic_write_text(out_dir / RESULTS_CSV, buffer.getvalue())
    best = best_trial(records)
    payload: dict[str, Any] = {"objective": OBJECTIVE, "n_done": sum(r.status == "done" for r in records),
                               "n_failed": sum(r.status == "failed" for r in records), "best": None}
    if best is not None:
        folder = Path(TRIALS_DIR) / best.trial_id
        payload["best"] = {**best.to_dict(), "run_dir": str(folder),
                           "config_file": str(folder / "config.yaml")}
    atomic_write_json(out_dir / BEST_JSON, payload)


def _number(value: float | int | None) -> str:
    """Full precision (repr) so that reruns compare exactly; empty for missing values."""
    return "" if value is None else repr(value)
