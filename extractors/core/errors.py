"""Errors raised by extractors, configs and media decoding.

Only :class:`BadMediaError` is treated as a per-item problem by the build runner (recorded, skipped);
every other error is a bug or a usage error and stops the run.
"""

from __future__ import annotations


class ExtractorError(Exception):
    """Base class of every error raised by ``affectcache.extractors``."""


class BadMediaError(ExtractorError):
    """A media item cannot be used: missing, empty, corrupt, or lacking a required stream.

    The message names the file and the cause; the build runner records it against the item and moves on.
    """


class MissingStreamError(BadMediaError):
    """The item lacks the kind of stream the extractor reads (a video without an audio track): the
    modality does not apply to it. Recorded as not applicable, which is not a failure."""


class ModelUnavailableError(ExtractorError):
    """A model's weights cannot be loaded here: not in the local cache and the hub is unreachable (or
    offline), no such repository or revision, or a local folder that holds no model. The message names the
    model and the remedies; the run is refused, never recorded per item."""


class ConfigError(ExtractorError, ValueError):
    """A configuration is invalid: unknown keys, wrong types, or failed cross-field checks."""


class UnknownExtractorError(ExtractorError, KeyError):
    """No extractor is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
