"""Extractor registry: built-ins register by decorator; other packages through entry points.

Third-party extractors declare ``[project.entry-points."affectcache.extractors"] name = "pkg.mod:Class"``.
A plug-in that fails to load only warns, so one broken package cannot take the CLI down.
"""

from __future__ import annotations

import re
import warnings
from importlib import metadata
from typing import Any, TypeVar

from affectcache.extractors.base import Extractor
from affectcache.extractors.errors import UnknownExtractorError

ENTRY_POINT_GROUP = "affectcache.extractors"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
RESERVED_NAMES = frozenset({"labels"})

E = TypeVar("E", bound=type[Extractor[Any]])

_REGISTRY: dict[str, type[Extractor[Any]]] = {}
_entry_points_loaded = False


def register_extractor(cls: E) -> E:
    """Class decorator adding an extractor to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{cls.__qualname__}: extractor name must match {NAME_PATTERN.pattern}, "
                         f"got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"{cls.__qualname__}: {name!r} is reserved for the store's own groups")
    for attr in ("version", "modality_kind", "config_type"):
        if not hasattr(cls, attr):
            raise ValueError(f"{cls.__qualname__}: extractor class must define {attr}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"extractor name {name!r} is already registered to "
                         f"{existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def unregister_extractor(name: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    _REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if _REGISTRY.get(ep.name) is not cls:
                register_extractor(cls)
        except Exception as exc:
            warnings.warn(f"affectcache: extractor plug-in {ep.name!r} ({ep.value}) failed to load: {exc}",
                          RuntimeWarning, stacklevel=2)


def available_extractors() -> list[str]:
    """Sorted names of every registered extractor (built-ins and plug-ins)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_extractor_cls(name: str) -> type[Extractor[Any]]:
    """The extractor class registered as ``name``; raises :class:`UnknownExtractorError` listing choices."""
    if name not in _REGISTRY:
        _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownExtractorError(
            f"no extractor named {name!r}; available: {sorted(_REGISTRY)}") from None
