"""Strict parsing for the MCDM trainer's configs (the rules of extractor configs, one implementation).

Configs are frozen keyword-only dataclasses with a docstring under every field; ``from_dict`` refuses
unknown keys and wrong types with every reason at once, then runs ``validate()``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from affectcache.extractors.config import _coerce, stable_hash
from affectcache.extractors.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class StrictConfig:
    """Base of the trainer configs here: ``to_dict``/``from_dict``/``validate``/``replace``."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint(self) -> str:
        """sha256 over the class name and every field."""
        return stable_hash({"config_type": type(self).__name__, "fields": self.to_dict()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from plain data (lists accepted for tuples); unknown keys and bad types are refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping of field values, "
                              f"got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        problems: list[str] = []
        unknown = sorted(set(data) - names)
        if unknown:
            problems.append(f"unknown keys {unknown}; valid keys: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in names:
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
    return value
