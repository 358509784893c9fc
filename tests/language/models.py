"""Tiny random language models for the tests, built once per test process into a shared temporary folder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from affectcache.extractors import language_standins


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="affectcache-tiny-language-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def tiny_model(kind: str) -> str:
    """Path of the tiny model ``kind``: qwen2.5-vl, qwen3-vl, hf-whisper, openai-whisper, emotion, clip."""
    builders = {
        "qwen2.5-vl": language_standins.tiny_qwen2_5_vl,
        "qwen3-vl": language_standins.tiny_qwen3_vl,
        "hf-whisper": language_standins.tiny_hf_whisper,
        "openai-whisper": language_standins.tiny_openai_whisper,
        "emotion": language_standins.tiny_emotion_roberta,
        "clip": language_standins.tiny_clip,
    }
    return str(builders[kind](_root() / kind))
