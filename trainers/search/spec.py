"""What a hyperparameter search explores: the ``grid.yaml`` of ``affectcache search``.

::

    strategy: grid          # grid (every combination), greedy (one parameter at a time) or tpe (optuna)
    preset: demo            # optional: start from a preset of the model (else its defaults)
    base:                   # fields every trial shares (the model config's own fields)
      input_modality: clip-face
      epochs: 30
    params:                 # searched fields and their values, in the order greedy sweeps them
      window: [100, 200, 400]
      lr: [3.0e-4, 1.0e-3]
    n_trials: 20            # tpe only: trials to run (default: the size of the grid)
    seed: 0                 # tpe only: sampler seed

A trial's config is the preset (or defaults), then ``base``, then the trial's values of ``params``. Its id
is deterministic: the model name and a hash of the full trial config (so a rerun finds its trials again).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.config import Config
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.provenance import stable_hash
from affectcache.trainers.config import TrainerConfig
from affectcache.trainers.models import get_model_spec

if TYPE_CHECKING:
    from pathlib import Path

Params = dict[str, Any]
"""One trial's values of the searched fields."""

TRIAL_ID_HASH_CHARS = 10


@dataclass(frozen=True, kw_only=True)
class SearchSpec(Config):
    """A search: strategy, starting config and the searched fields with their values."""

    strategy: str = "grid"
    """``grid`` (every combination), ``greedy`` (sweep one parameter with the others at the best so far,
    keep the best value, next parameter; SCD-MMPSR's procedure) or ``tpe`` (optuna's TPE sampler over the
    same values; needs the ``optuna`` extra)."""

    preset: str | None = None
    """A preset of the model to start from (``affectcache train show-config NAME --preset P``); null =
    the model's defaults."""

    base: Any = field(default_factory=dict)
    """Config fields every trial shares (a mapping of field -> value)."""

    params: Any = field(default_factory=dict)
    """Searched fields: a mapping of field -> list of values (greedy sweeps them in this order and starts
    from each list's first value)."""

    n_trials: int | None = None
    """``tpe`` only: how many trials to run (null = the number of grid combinations)."""

    seed: int = 0
    """``tpe`` only: seed of the sampler."""

    def validate(self) -> list[str]:
        from affectcache.trainers.search.strategies import STRATEGIES

        problems = super().validate()
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {STRATEGIES.names()}, got {self.strategy!r}")
        if not isinstance(self.base, dict) or not all(isinstance(k, str) for k in self.base):
            problems.append("base must be a mapping of config field -> value")
        if not isinstance(self.params, dict) or not self.params:
            problems.append("params must map each searched config field to a list of values")
        else:
            for key, values in self.params.items():
                if not isinstance(values, list) or not values:
                    problems.append(f"params.{key}: expected a non-empty list of values, got {values!r}")
                elif len({stable_hash(v) for v in values}) != len(values):
                    problems.append(f"params.{key}: the values {values} repeat one")
            if isinstance(self.base, dict) and set(self.base) & set(self.params):
                problems.append(f"{sorted(set(self.base) & set(self.params))} are both in base and params; "
                                "a field is either fixed or searched")
        if self.n_trials is not None and self.n_trials < 1:
            problems.append(f"n_trials must be >= 1, got {self.n_trials}")
        return problems

    def grid_size(self) -> int:
        """Number of combinations of the searched values."""
        return math.prod(len(v) for v in self.params.values())

    def combinations(self) -> list[Params]:
        """Every combination of the searched values; the last field varies fastest."""
        keys = list(self.params)
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(self.params[k] for k in keys))]


def read_spec(path: Path) -> SearchSpec:
    """The search in a YAML/JSON file (refused with every problem, naming the file)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with strategy, base and params (see `affectcache "
                          "search --help`)")
    try:
        return SearchSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class PlannedTrial:
    """A trial as the driver plans it: its id, values and config (or why the config is invalid)."""

    trial_id: str
    """Deterministic id (``<model>-<hash of the config>``): the trial's folder name."""
    params: Params
    """The searched fields' values."""
    config: TrainerConfig | None
    """The full trial config; None when the values make an invalid config."""
    error: str | None = None
    """Why the config is invalid (the trial is recorded as failed without running)."""


def trial_fields(model: str, spec: SearchSpec, params: Params) -> dict[str, Any]:
    """The config fields of a trial before parsing: the preset (or defaults), ``base``, then ``params``."""
    model_spec = get_model_spec(model)
    presets = dict(model_spec.presets or {})
    if spec.preset is not None and spec.preset not in presets:
        raise ConfigError(f"{model} has no preset {spec.preset!r}; presets: {sorted(presets)}")
    start = presets[spec.preset]() if spec.preset is not None else model_spec.config_type()
    return {**start.to_dict(), **spec.base, **params}


def plan_trial(model: str, spec: SearchSpec, params: Params) -> PlannedTrial:
    """The config and id of the trial of ``model`` with the searched values ``params``."""
    model_spec = get_model_spec(model)
    data = trial_fields(model, spec, params)
    try:
        config = model_spec.config_type.from_dict(data)
    except ConfigError as exc:
        return PlannedTrial(trial_id=_trial_id(model, data), params=params, config=None, error=str(exc))
    return PlannedTrial(trial_id=_trial_id(model, config.to_dict()), params=params, config=config)


def _trial_id(model: str, config: dict[str, Any]) -> str:
    return f"{model}-{stable_hash({'model': model, 'config': config})[:TRIAL_ID_HASH_CHARS]}"


def check_base(model: str, spec: SearchSpec) -> None:
    """Refuse a search whose fixed part is wrong for every trial: an unknown model, preset or field."""
    from affectcache.trainers.data.config import VAConfig

    model_spec = get_model_spec(model)
    if not issubclass(model_spec.config_type, VAConfig):
        raise ConfigError(f"{model} is not a valence/arousal model; search trains VA models (ras-face, "
                          "ras-behaviour, ras-audio, dcmmoe, dcmmoe-released, raav)")
    fields = set(model_spec.config_type().to_dict())
    unknown = sorted((set(spec.base) | set(spec.params)) - fields)
    if unknown:
        raise ConfigError(f"{unknown} are not fields of {model}'s config; see `affectcache train "
                          f"show-config {model}`")
    trial_fields(model, spec, {})  # the preset exists
