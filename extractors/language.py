"""Registers the language extractors (issue 7) on import: Whisper transcripts, Qwen-VL behaviour captions
and hidden-state embeddings, and text embeddings of any stored text modality."""

from __future__ import annotations

from affectcache.extractors import behaviour_caption as _behaviour_caption  # noqa: F401
from affectcache.extractors import behaviour_hidden as _behaviour_hidden  # noqa: F401
from affectcache.extractors import text_embedding as _text_embedding  # noqa: F401
from affectcache.extractors import transcript_whisper as _transcript_whisper  # noqa: F401
