"""Tiny random stand-in models: building them once, atomically, and saying that they are stand-ins.

The offline demo and the tests run every model-based extractor on toy-size models of the real
architecture, built from a config with a fixed seed and saved into a folder (``audio_standins``,
``language_standins``, ``visual_standins``). This module holds what those builders share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

_SEED = 0
_READY = "config.json"


@contextlib.contextmanager
def _atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary sibling folder renamed to ``path`` when the block succeeds (concurrent builders
    never see a half-written model)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if (path / _READY).exists():  # another process finished first
            return
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_standin(path: str | Path, make: Callable[[Path], None]) -> Path:
    """Run ``make(folder)`` once with a fixed torch seed; reuse the folder when already built."""
    out = Path(path)
    if not (out / _READY).exists():
        import torch

        with _atomic_folder(out) as tmp, torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            make(tmp)
    return out


_WARNED: set[tuple[str, str]] = set()


def stand_in_warning(name: str, path: str) -> None:
    """Log (once per model and process) that a demo uses a tiny random model (its numbers carry no
    meaning)."""
    if (name, path) in _WARNED:
        return
    _WARNED.add((name, path))
    logger.warning("%s: the demo uses a tiny RANDOM stand-in model at %s (no real weights configured: "
                   "set AFFECTCACHE_DEMO_%s_MODEL to a hub id or folder to use real ones); its features "
                   "carry no meaning", name, path, name.upper().replace("-", "_"))


def demo_model(name: str, build: Callable[[], Path]) -> tuple[str, bool]:
    """The model the offline demo runs extractor ``name`` with, and whether it is a stand-in.

    ``AFFECTCACHE_DEMO_<NAME>_MODEL`` (a hub id or a local folder) selects real weights; otherwise
    ``build()`` makes (or reuses) a tiny random stand-in and a warning says so.
    """
    real = os.environ.get(f"AFFECTCACHE_DEMO_{name.upper().replace('-', '_')}_MODEL")
    if real:
        return real, False
    path = build()
    stand_in_warning(name, str(path))
    return str(path), True


def byte_vocab(specials: tuple[str, ...] = (), suffix: str | None = None) -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: the specials, then the 256 byte symbols (and their
    ``suffix`` forms, for CLIP's end-of-word marker). Covers any text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(specials)}
    for c in symbols:
        vocab.setdefault(c, len(vocab))
    if suffix:
        for c in symbols:
            vocab.setdefault(c + suffix, len(vocab))
    return vocab
