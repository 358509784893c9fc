"""Trainer configuration: the project's :class:`~affectcache.extractors.core.config.Config` contract, plus
YAML + ``key=value`` overrides.

Every trainer and model config derives from :class:`TrainerConfig` (a docstring under each field, strict
``from_dict``, ``validate`` returning every problem; presets with the authors' values are functions).
:func:`load_config` applies a YAML/JSON file and ``key=value`` overrides (values parsed as YAML) on top
of a base config, as ``affectcache train NAME --config FILE --set lr=3e-4`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from affectcache.extractors.core.config import Config
from affectcache.extractors.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

C = TypeVar("C", bound=Config)


@dataclass(frozen=True, kw_only=True)
class TrainerConfig(Config):
    """Base of trainer configs (no fields of its own; every field counts in the fingerprint)."""


def load_config(base: C, config_file: Path | None = None, overrides: Sequence[str] = ()) -> C:
    """``base`` updated by a YAML/JSON mapping file and then by ``key=value`` overrides (YAML values).

    Raises:
        ConfigError: The file is not a mapping, an override is not ``key=value``, or the result is invalid.
    """
    import yaml

    data = base.to_dict()
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_file}: not valid YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of config fields")
        data.update(loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        data[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return type(base).from_dict(data)
