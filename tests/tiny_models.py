"""Tiny random models for the tests, built once per test process into a shared temporary folder.

Built from configs (``affectcache.extractors.testing``'s stand-ins) and loaded back through each
extractor's real ``from_pretrained`` path; a second or two for all of them.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from affectcache.extractors.testing import audio_standins, language_standins, visual_standins

if TYPE_CHECKING:
    from collections.abc import Callable

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "wavlm": audio_standins.tiny_wavlm,
    "wavlm-group": lambda p: audio_standins.tiny_wavlm(p, feat_extract_norm="group",
                                                        do_stable_layer_norm=False),
    "wav2vec2-emotion": audio_standins.tiny_wav2vec2_emotion,
    "clap": audio_standins.tiny_clap,
    "clap-fused": lambda p: audio_standins.tiny_clap(p, fusion=True),
    "ast": audio_standins.tiny_ast,
    "qwen2.5-vl": language_standins.tiny_qwen2_5_vl,
    "qwen3-vl": language_standins.tiny_qwen3_vl,
    "hf-whisper": language_standins.tiny_hf_whisper,
    "openai-whisper": language_standins.tiny_openai_whisper,
    "emotion": language_standins.tiny_emotion_roberta,
    "clip": visual_standins.tiny_clip,
}
"""Every tiny model the tests use, by kind."""


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="affectcache-tiny-models-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def tiny_model(kind: str) -> str:
    """Folder (or file) of the tiny model ``kind`` (one of :data:`BUILDERS`)."""
    return str(BUILDERS[kind](_root() / kind))
