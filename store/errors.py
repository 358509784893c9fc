"""Errors raised by ``affectcache.store``."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by ``affectcache.store``."""


class ProvenanceMismatchError(StoreError):
    """A modality already exists in the store with another extractor version, config or model."""


class FeatureNotFoundError(StoreError, KeyError):
    """The requested modality or video entry is not (completely) in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidVideoIdError(StoreError, ValueError):
    """A video id that could escape the store or break its layout."""


class LockHeldError(StoreError):
    """Another builder holds the lock of this modality."""


class ManifestError(StoreError, ValueError):
    """A manifest file cannot be used; the message names every bad row and column."""


class OldLayoutError(StoreError):
    """The store (or a modality) has the per-video layout of an older affectcache: upgrade it first."""
