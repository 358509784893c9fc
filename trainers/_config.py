"""Shared base of the trainer configs (models, late fusion): frozen kw-only dataclasses, strict parsing.

Parsing reuses the extractor configs' field coercion, so a trainer config in YAML or ``--set`` form is
refused for exactly the same reasons (unknown keys listed with the valid ones, wrong types, failed
cross-field checks) with the same :class:`~affectcache.extractors.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from affectcache.extractors.config import _coerce, _to_jsonable
from affectcache.extractors.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class StrictConfig:
    """Base of the trainer configs (models, late fusion); subclasses add fields, each with a docstring."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {f.name: _to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from plain data; unknown keys, wrong types and cross-field problems are refused
        with every reason at once. Missing keys keep their defaults."""
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
                    kwargs[key] = _coerce(value, hints[key], key)
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
        """Every cross-field problem of this config (empty when valid). Subclasses extend the list."""
        return []

    def check(self) -> None:
        """Raise :class:`ConfigError` listing every problem :meth:`validate` finds."""
        problems = self.validate()
        if problems:
            raise ConfigError(f"{type(self).__name__}: " + "; ".join(problems))
