"""Atomic file writes: readers see the old file or the new one, never half of one.

Every file affectcache writes outside Zarr (manifests, demo media, assets, stand-in weights, lexicons,
normaliser stats, trainer run files and checkpoints) goes through :func:`atomic_path`: the content is
written to a temporary file in the target's folder (same filesystem, so the rename is atomic), flushed to
disk, then renamed over the target. On any failure, ``KeyboardInterrupt`` included, the temporary file is
removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems (and Windows) cannot open a folder: best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block succeeds it becomes ``target``.

    The temporary name is hidden (``.``), says ``partial`` and keeps the target's suffix (FFmpeg picks a
    container format from it), so it never looks like output. The caller writes the file with any
    library (PyAV, ``np.savez``, ``torch.save``, ...); the parent folder is created if needed.

    With ``exclusive``, an existing ``target`` is never replaced: the file is linked into place and
    :class:`FileExistsError` raised if ``target`` exists by then (e.g. another process saved it first).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.partial{target.suffix}")
    try:
        yield tmp
        _fsync_file(tmp)
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        # Only left behind when the block failed (after a successful rename it no longer exists).
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (new files get the usual umask permissions)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, payload: Any, *, indent: int | None = 2) -> None:
    """Write ``payload`` as JSON (with a final newline) to ``target`` atomically."""
    atomic_write_text(target, json.dumps(payload, indent=indent, ensure_ascii=False) + "\n")
