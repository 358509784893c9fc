"""Registries: name -> thing, one mechanism for extractors, corpus adapters, model assets and trainers.

A :class:`Registry` checks names, refuses a second different registration under a taken name, imports
its built-in modules lazily on first lookup (so importing a package stays cheap), loads third-party
plug-ins from an entry-point group, and answers an unknown name with the choices and the closest match.

Extractors: built-ins register by decorator; third-party packages declare
``[project.entry-points."affectcache.extractors"] name = "pkg.mod:Class"``. A plug-in that fails to load
only warns, so one broken package cannot take the CLI down.
"""

from __future__ import annotations

import difflib
import importlib
import re
import warnings
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from affectcache.extractors.core.base import Extractor
from affectcache.extractors.core.errors import UnknownExtractorError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
"""What a registered name may look like (it becomes a CLI word and, for extractors, a store group)."""


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Named things of one sort.

    Args:
        what: What the things are, for messages ("extractor", "corpus adapter", ...).
        error: Exception type raised for an unknown name (called with the message).
        builtin_modules: Modules imported on first lookup; they register their things on import.
        entry_point_group: Entry-point group whose plug-ins are loaded on first lookup of a missing name.
        reserved: Names nobody may register.
        same: How a re-registration is recognised as the same thing (identity by default).
    """

    def __init__(self, what: str, *, error: Callable[[str], Exception],
                 builtin_modules: tuple[str, ...] = (), entry_point_group: str | None = None,
                 reserved: frozenset[str] = frozenset(),
                 same: Callable[[T, T], bool] = lambda a, b: a is b) -> None:
        self.what = what
        self._error = error
        self._builtin_modules = builtin_modules
        self._entry_point_group = entry_point_group
        self._reserved = reserved
        self._same = same
        self._items: dict[str, T] = {}
        self._builtins_loaded = not builtin_modules
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name`` (registering the same item again is a no-op)."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"{self.what} name must match {NAME_PATTERN.pattern}, got {name!r}")
        if name in self._reserved:
            raise ValueError(f"{self.what} name {name!r} is reserved")
        existing = self._items.get(name)
        if existing is not None and not self._same(existing, item):
            raise ValueError(f"{self.what} name {name!r} is already registered to {_describe(existing)}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove a registration (for tests and interactive sessions)."""
        self._items.pop(name, None)

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self._entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self._entry_point_group):
            try:
                item = ep.load()
                if self._items.get(ep.name) is not item:
                    self.register(ep.name, item)
            except Exception as exc:  # a broken plug-in must not take the built-ins down
                warnings.warn(f"affectcache: {self.what} plug-in {ep.name!r} ({ep.value}) failed to load: "
                              f"{exc}", RuntimeWarning, stacklevel=3)

    def names(self) -> list[str]:
        """Sorted names of everything registered (built-ins and plug-ins)."""
        self._load_builtins()
        self._load_plugins()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The item registered as ``name``; the registry's error (choices + closest match) otherwise."""
        self._load_builtins()
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            choices = sorted(self._items)
            raise self._error(f"no {self.what} named {name!r}{did_you_mean(name, choices)}; "
                              f"available: {choices}") from None

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _describe(item: object) -> str:
    if isinstance(item, type):
        return f"{item.__module__}.{item.__qualname__}"
    return repr(item)


# ---- extractors ------------------------------------------------------------------------------------
ENTRY_POINT_GROUP = "affectcache.extractors"

EXTRACTORS: Registry[type[Extractor[Any]]] = Registry(
    "extractor", error=UnknownExtractorError, entry_point_group=ENTRY_POINT_GROUP,
    reserved=frozenset({"labels"}))
"""Every extractor class by name (``labels`` is reserved for the store's label tracks)."""

E = TypeVar("E", bound=type[Extractor[Any]])


def register_extractor(cls: E) -> E:
    """Class decorator adding an extractor to the registry under ``cls.name``."""
    for attr in ("name", "version", "modality_kind", "config_type"):
        if not hasattr(cls, attr):
            raise ValueError(f"{cls.__qualname__}: extractor class must define {attr}")
    EXTRACTORS.register(cls.name, cls)
    return cls


def unregister_extractor(name: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    EXTRACTORS.unregister(name)


def available_extractors() -> list[str]:
    """Sorted names of every registered extractor (built-ins and plug-ins)."""
    return EXTRACTORS.names()


def get_extractor_cls(name: str) -> type[Extractor[Any]]:
    """The extractor class registered as ``name``; :class:`UnknownExtractorError` listing choices."""
    return EXTRACTORS.get(name)
