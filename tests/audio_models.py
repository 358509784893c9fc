"""Tiny random audio models for the tests, built once per test process into a shared temporary folder.

Built from configs (``affectcache.extractors.audio_standins``) and loaded back through each extractor's
real ``from_pretrained`` path; about a second for all of them.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from affectcache.extractors import audio_standins


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="affectcache-tiny-audio-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def tiny_model(kind: str) -> str:
    """Folder of the tiny model ``kind``: wavlm, wavlm-group, wav2vec2-emotion, clap, clap-fused, ast."""
    builders = {
        "wavlm": lambda p: audio_standins.tiny_wavlm(p),
        "wavlm-group": lambda p: audio_standins.tiny_wavlm(p, feat_extract_norm="group",
                                                            do_stable_layer_norm=False),
        "wav2vec2-emotion": audio_standins.tiny_wav2vec2_emotion,
        "clap": audio_standins.tiny_clap,
        "clap-fused": lambda p: audio_standins.tiny_clap(p, fusion=True),
        "ast": audio_standins.tiny_ast,
    }
    return str(builders[kind](_root() / kind))
