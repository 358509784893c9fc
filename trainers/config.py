"""Trainer configuration: frozen keyword-only dataclasses, strictly parsed, loadable from YAML + overrides.

Every trainer and model config derives from :class:`TrainerConfig`, which gives the same contract as the
extractor configs (:mod:`affectcache.extractors.config`): a docstring under each field, ``to_dict`` /
strict ``from_dict`` (unknown keys and wrong types refused with every reason), ``validate`` returning all
cross-field problems. Presets with the authors' values are functions returning a config.

:func:`load_config` applies a YAML/JSON file and ``key=value`` overrides (values parsed as YAML) on top of a
base config, as ``affectcache train NAME --config FILE --set lr=3e-4`` does.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

from affectcache.extractors.config import coerce_value, stable_hash
from affectcache.extractors.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

C = TypeVar("C", bound="TrainerConfig")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """Base of trainer/model configs (no fields of its own)."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint(self) -> str:
        """sha256 over the config class name and every field."""
        return stable_hash({"config_type": type(self).__name__, "fields": self.to_dict()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from plain data; unknown keys, wrong types and invalid combinations are refused at once."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping of field values, "
                              f"got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        problems: list[str] = []
        unknown = sorted(set(data) - fields)
        if unknown:
            problems.append(f"unknown keys {unknown}; valid keys: {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in fields:
                try:
                    kwargs[key] = coerce_value(value, hints[key], key)
                except ConfigError as exc:
                    problems.append(str(exc))
        if problems:
            raise ConfigError(f"{cls.__name__}: " + "; ".join(problems))
        config = cls(**kwargs)
        config.check()
        return config

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, parsed and validated like :meth:`from_dict`."""
        return self.from_dict({**self.to_dict(), **changes})

    def validate(self) -> list[str]:
        """Every cross-field problem (empty when valid). Subclasses extend the list."""
        return []

    def check(self) -> None:
        """Raise :class:`ConfigError` listing every problem :meth:`validate` finds."""
        problems = self.validate()
        if problems:
            raise ConfigError(f"{type(self).__name__}: " + "; ".join(problems))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


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
