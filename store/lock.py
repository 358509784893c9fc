"""Build locks: one builder per modality at a time, so two runs never interleave their writes.

The lock is a file ``<store>/_affectcache/locks/<modality>.lock`` created atomically (``O_EXCL``) and
holding the owner's host, pid and start time. A lock left by a dead process on this host is recovered
automatically; a lock held by a live process, or by another host (whose processes cannot be checked),
is refused with a message saying who holds it and how to clear it.

Remote (fsspec) stores have no atomic create-if-absent here, so no lock is taken for them: the build
runner logs a warning and the user must not run two builders of one modality at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.provenance import utc_now
from affectcache.store.errors import LockHeldError
from affectcache.store.zarr_store import FeatureStore, check_modality_name

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

logger = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ModalityLock:
    """Context manager holding the build lock of one modality of a store."""

    def __init__(self, store: FeatureStore, modality: str) -> None:
        self.store = store
        self.modality = check_modality_name(modality)
        private = store.private_dir()
        self.path: Path | None = (
            None if private is None else private / "locks" / (modality.replace("/", "__") + ".lock"))
        self._held = False

    def holder(self) -> dict[str, Any] | None:
        """The recorded owner of the lock, or None when it is free (or unreadable)."""
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeldError`."""
        if self.path is None:
            logger.warning("store %s is remote: no build lock is taken for %s; do not run two builders "
                           "of it at once", self.store.url, self.modality)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": utc_now(),
                  "command": " ".join(sys.argv)[:300]}
        for _attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if self._is_stale(holder):
                    logger.warning("removing stale lock of %s left by dead process %s on %s",
                                   self.modality, (holder or {}).get("pid"), (holder or {}).get("host"))
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                who = (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
                       if holder else "an unknown process")
                raise LockHeldError(
                    f"modality {self.modality!r} in {self.store.url} is being built by {who}; wait for it "
                    f"to finish, or if that process is gone, delete {self.path}") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
            self._held = True
            return
        raise LockHeldError(f"could not take the lock {self.path}: it keeps reappearing; another builder "
                            "is starting at the same moment")

    @staticmethod
    def _is_stale(holder: dict[str, Any] | None) -> bool:
        if holder is None:
            return False  # being written right now, or foreign: never steal
        same_host = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        return same_host and isinstance(pid, int) and not _pid_alive(pid)

    def release(self) -> None:
        """Release the lock if this object holds it."""
        if self._held and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = False

    def __enter__(self) -> ModalityLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
