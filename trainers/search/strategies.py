"""Search strategies, by name: ``grid``, ``greedy`` and ``tpe``.

A strategy decides which trials to run and hands them to ``evaluate`` in batches; every trial of a batch
runs in parallel (one Dask task each) and ``evaluate`` returns their records in the batch's order. The
strategy never trains anything itself, so it is tested on a planted objective.

* ``grid``: one batch with every combination.
* ``greedy`` (SCD-MMPSR's one-parameter-at-a-time search): start from each list's first value; for each
  searched field in order, sweep its values with the other fields at the best values so far, keep the
  value of the best finished trial (the earlier value on ties; the current one if every trial failed),
  then the next field. Trials repeated across sweeps (the current point) are evaluated once.
* ``tpe``: optuna's TPE sampler over the same values (categorical), batches of ``parallel`` trials asked
  at once, told when they finish; the study lives in ``optuna.journal`` (file-based, so a rerun continues
  it: trials asked but never told by a killed search are evaluated and told first).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.registry import Registry
from affectcache.trainers.search.spec import Params, SearchSpec
from affectcache.trainers.search.trials import TrialRecord

Evaluate = Callable[[Sequence[Params]], list[TrialRecord]]
"""Runs a batch of trials in parallel; their records in the batch's order."""

logger = logging.getLogger(__name__)

OPTUNA_JOURNAL = "optuna.journal"


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """A registered search strategy."""

    name: str
    """Registry name (the ``strategy`` of grid.yaml)."""
    run: Callable[[SearchSpec, Evaluate, Path, int], None]
    """``run(spec, evaluate, search folder, parallel trials)``."""
    planned: Callable[[SearchSpec], int]
    """How many distinct trials the strategy will run (for the trials-left count)."""


STRATEGIES: Registry[Strategy] = Registry("search strategy", error=ConfigError)


def _grid(spec: SearchSpec, evaluate: Evaluate, state_dir: Path, parallel: int) -> None:
    evaluate(spec.combinations())


def _greedy(spec: SearchSpec, evaluate: Evaluate, state_dir: Path, parallel: int) -> None:
    current: Params = {key: values[0] for key, values in spec.params.items()}
    for key, values in spec.params.items():
        records = evaluate([{**current, key: value} for value in values])
        scored = [(r.objective, i) for i, r in enumerate(records) if not math.isnan(r.objective)]
        if not scored:
            logger.warning("greedy search: every trial of %s failed; keeping %s=%r", key, key, current[key])
            continue
        best = max(scored, key=lambda s: (s[0], -s[1]))[1]
        current[key] = values[best]
        logger.info("greedy search: %s=%r (val CCC mean %.4f)", key, values[best], records[best].objective)


def _greedy_planned(spec: SearchSpec) -> int:
    return sum(len(v) for v in spec.params.values()) - (len(spec.params) - 1)


def _tpe(spec: SearchSpec, evaluate: Evaluate, state_dir: Path, parallel: int) -> None:
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(state_dir / OPTUNA_JOURNAL)))
    study = optuna.create_study(study_name="search", storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=spec.seed), load_if_exists=True)
    # Choices are JSON texts: optuna's categorical values must be scalars, searched values may be lists.
    choices = {key: [json.dumps(v) for v in values] for key, values in spec.params.items()}
    total = _tpe_planned(spec)

    def run_batch(numbers: list[int], params: list[Params]) -> None:
        for number, record in zip(numbers, evaluate(params), strict=True):
            if math.isnan(record.objective):
                study.tell(number, state=TrialState.FAIL)
            else:
                study.tell(number, record.objective)

    leftover = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if leftover:  # asked by a search that was killed before telling them
        run_batch([t.number for t in leftover],
                  [{k: json.loads(t.params[k]) for k in spec.params} for t in leftover])
    while (told := len(study.get_trials(deepcopy=False))) < total:
        asked = [study.ask() for _ in range(min(parallel, total - told))]
        run_batch([t.number for t in asked],
                  [{k: json.loads(t.suggest_categorical(k, choices[k])) for k in spec.params} for t in asked])


def _tpe_planned(spec: SearchSpec) -> int:
    return spec.n_trials if spec.n_trials is not None else spec.grid_size()


def import_optuna() -> Any:
    """optuna, or a one-line refusal naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("strategy: tpe needs optuna: pip install 'affectcache[optuna]' (or pick grid or "
                          "greedy)") from None
    return optuna


for _strategy in (Strategy(name="grid", run=_grid, planned=lambda spec: spec.grid_size()),
                  Strategy(name="greedy", run=_greedy, planned=_greedy_planned),
                  Strategy(name="tpe", run=_tpe, planned=_tpe_planned)):
    STRATEGIES.register(_strategy.name, _strategy)
