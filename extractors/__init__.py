"""Extractors: media decoding, the extractor contract, the registry and the built-in extractors.

Importing this package registers the built-ins; it never imports torch or transformers (models load
lazily on the worker), so the CLI stays fast.
"""

from __future__ import annotations

from affectcache.extractors import ast_audio as _builtin_ast  # noqa: F401  (registers "ast")
from affectcache.extractors import blendshapes as _builtin_blendshapes  # noqa: F401  (registers "blendshapes")
from affectcache.extractors import clap_audio as _builtin_clap_audio  # noqa: F401  (registers "clap-audio")
from affectcache.extractors import language as _builtin_language  # noqa: F401  (issue 7 extractors)
from affectcache.extractors import lasca_embedding as _builtin_lasca_embedding  # noqa: F401  (LaScA)
from affectcache.extractors import lasca_text as _builtin_lasca_text  # noqa: F401  (LaScA)
from affectcache.extractors import lasca_windows as _builtin_lasca_windows  # noqa: F401  (LaScA)
from affectcache.extractors import mfcc as _builtin_mfcc  # noqa: F401  (registers "mfcc")
from affectcache.extractors import visual as _builtin_visual  # noqa: F401  (face, clip-*, grada-face)
from affectcache.extractors import wav2vec2_emotion as _builtin_w2v2_emo  # noqa: F401  (registers it)
from affectcache.extractors import wavlm as _builtin_wavlm  # noqa: F401  (registers "wavlm")
from affectcache.extractors import wavlm_frames as _builtin_wavlm_frames  # noqa: F401  (registers it)
from affectcache.extractors.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.config import ExtractorConfig, runtime_only
from affectcache.extractors.errors import (
    BadMediaError,
    ConfigError,
    ExtractorError,
    UnknownExtractorError,
)
from affectcache.extractors.records import MODALITY_KINDS, FeatureArray, MediaItem, ModalityKind
from affectcache.extractors.registry import (
    available_extractors,
    get_extractor_cls,
    register_extractor,
    unregister_extractor,
)

__all__ = [
    "MODALITY_KINDS",
    "NO_UPSTREAM",
    "BadMediaError",
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
