"""Extractors: media decoding, the extractor contract, the registry and the built-in extractors.

Importing this package registers the built-ins; it never imports torch or transformers (models load
lazily on the worker), so the CLI stays fast.
"""

from __future__ import annotations

from affectcache.extractors import audio, language, lasca, visual  # noqa: F401  (register the built-ins)
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import Config, ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import (
    BadMediaError,
    ConfigError,
    ExtractorError,
    UnknownExtractorError,
)
from affectcache.extractors.core.records import MODALITY_KINDS, FeatureArray, MediaItem, ModalityKind
from affectcache.extractors.core.registry import (
    available_extractors,
    get_extractor_cls,
    register_extractor,
    unregister_extractor,
)

__all__ = [
    "MODALITY_KINDS",
    "NO_UPSTREAM",
    "BadMediaError",
    "Config",
    "ConfigError",
    "Extractor",
    "ExtractorConfig",
    "ExtractorError",
    "FeatureArray",
    "MediaItem",
    "ModalityKind",
    "UnknownExtractorError",
    "Upstream",
    "available_extractors",
    "get_extractor_cls",
    "register_extractor",
    "runtime_only",
    "unregister_extractor",
]
