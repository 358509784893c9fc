"""Build locks: one builder per modality at a time, so two runs never interleave their writes.

The lock is the file ``<store>/_affectcache/locks/<modality>.lock``. Holding it means holding an OS
advisory lock (``flock``) on that open file: the kernel releases it when the holder exits, however it
exits (``kill -9`` included), so there is no stale lock to recover and nothing is ever taken over. The
file's content (host, pid, start time, command) is only information for the "held by" message. Whoever
acquires the ``flock`` checks that the file it locked is still the one at the path (a releasing holder
unlinks it) and otherwise tries again.

Where the filesystem refuses ``flock`` (some network filesystems), the lock falls back to a file that
exists only complete: the record is written to a private temporary file and hard-linked into place
(``link`` fails if the lock exists), so a lock file is never empty. A lock of a dead process on this host
is taken over only under a host-wide mutex, after re-reading it there and proving it stale, so two
processes can never both remove locks and both build. Locks of other hosts are never taken over (their
processes cannot be checked): the message says how to clear one.

Remote (fsspec) stores have no lock here: the build runner logs a warning and the user must not run two
builders of one modality at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.provenance import utc_now
from affectcache.store.errors import LockHeldError
from affectcache.store.zarr_store import FeatureStore, check_modality_name

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import TracebackType

logger = logging.getLogger(__name__)

# errno values by which a filesystem says it has no flock (NFS without lockd, some FUSE mounts).
_NO_OS_LOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})
EMPTY_LOCK_STALE_S = 60.0
"""In the fallback, a lock file with no readable record (written by an older affectcache, or corrupted)
counts as stale once it is this old: a writer of any version fills it within milliseconds."""
_MAX_ATTEMPTS = 100
FLOCK_PROBE = ".flock-probe"


class _NoOsLock(Exception):
    """The filesystem of the lock file does not support ``flock``."""


def _os_lock(fd: int) -> bool:
    """Try to take the exclusive ``flock`` of ``fd`` without waiting; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_OS_LOCK:
            raise _NoOsLock(str(exc)) from exc
        raise
    return True


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
        self._fd: int | None = None  # the open, flock-ed lock file while held (OS lock)
        self._token: str | None = None  # our record's token while held (fallback)

    def holder(self) -> dict[str, Any] | None:
        """The owner recorded in the lock file (information only), or None when there is none.

        Under the OS lock the record may name a process that has exited: the lock itself is then free.
        """
        if self.path is None:
            return None
        try:
            # The holder reads through its own descriptor: opening (and closing) another one would drop
            # a POSIX lock, which is what flock is on some network filesystems.
            raw = os.pread(self._fd, 1 << 16, 0) if self._fd is not None else self.path.read_bytes()
            data = json.loads(raw)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None or self._token is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeldError` (never waits for a live holder)."""
        if self.path is None:
            logger.warning("store %s is remote: no build lock is taken for %s; do not run two builders "
                           "of it at once", self.store.url, self.modality)
            return
        if self.held:
            raise LockHeldError(f"this process already holds the lock of {self.modality!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        use_os_lock = _flock_works(self.path.parent)
        for _attempt in range(_MAX_ATTEMPTS):
            outcome = self._try_os_lock(self.path) if use_os_lock else self._try_file_lock(self.path)
            if outcome is True:
                return
            if outcome is False:
                raise LockHeldError(self._held_message(fallback=not use_os_lock))
            # None: the file changed under us (released, or a stale one removed): look again.
        raise LockHeldError(f"could not take the lock {self.path}: it keeps changing; another builder "
                            "is starting at the same moment")

    @staticmethod
    def _record() -> tuple[str, bytes]:
        """A fresh token and the holder record carrying it."""
        token = uuid.uuid4().hex
        return token, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": utc_now(),
                                  "command": " ".join(sys.argv)[:300], "token": token}).encode()

    def _try_os_lock(self, path: Path) -> bool | None:
        """True: taken; False: held by another; None: the file changed meanwhile, look again."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _os_lock(fd):
                os.close(fd)
                return False
            # A releasing holder unlinks the file before letting go: we may have locked a dead inode.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                os.close(fd)
                return None
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                return None
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        try:  # the record is only information: a full disk must not cost the lock we already hold
            _token, record = self._record()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError as exc:
            logger.debug("could not write the holder record into %s: %s", path, exc)
        return True

    def _try_file_lock(self, path: Path) -> bool | None:
        """The fallback without flock; returns as :meth:`_try_os_lock`."""
        token, record = self._record()
        tmp = path.with_name(f"{path.name}.{token}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(record)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic, fails if a lock exists: the file is never partial
            except FileExistsError:
                pass
            else:
                self._token = token
                return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return None if self._remove_if_stale(path) else False

    def _remove_if_stale(self, path: Path) -> bool:
        """Remove the lock file if, re-read under the host mutex, it belongs to a dead local process.

        Returns whether the lock file changed (removed by us, or gone meanwhile): then try again.
        """
        with _host_mutex(path):
            try:
                stat = os.stat(path)
                holder = self.holder()
            except FileNotFoundError:
                return True
            if not self._is_stale(holder, age_s=time.time() - stat.st_mtime):
                return False
            logger.warning("removing the stale lock of %s left by dead process %s on %s", self.modality,
                           (holder or {}).get("pid"), (holder or {}).get("host"))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return True

    @staticmethod
    def _is_stale(holder: dict[str, Any] | None, *, age_s: float) -> bool:
        if holder is None:
            return age_s > EMPTY_LOCK_STALE_S
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)

    def _held_message(self, *, fallback: bool) -> str:
        holder = self.holder()
        who = (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
               if holder else "another process")
        remedy = "wait for it to finish"
        if fallback:
            remedy += f", or if that process is gone, delete {self.path}"
        return f"modality {self.modality!r} in {self.store.url} is being built by {who}; {remedy}"

    def release(self) -> None:
        """Release the lock if this object holds it."""
        if self.path is not None and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                # Unlink while still holding the lock, so whoever locks this inode next sees it is gone.
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            finally:
                os.close(fd)
        if self.path is not None and self._token is not None:
            token, self._token = self._token, None
            # Only a dead holder's lock is ever removed by others, so the file is still ours.
            holder = self.holder()
            if holder is not None and holder.get("token") == token:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()

    def __enter__(self) -> ModalityLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _flock_works(directory: Path) -> bool:
    """Whether the filesystem of ``directory`` supports flock (probed on a file kept for it).

    Probing on the lock file itself would leave an empty lock file behind on filesystems without it.
    """
    fd = os.open(directory / FLOCK_PROBE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _os_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
    except _NoOsLock as exc:
        logger.info("the filesystem of %s has no flock (%s): using link-based lock files", directory, exc)
        return False
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def _host_mutex(lock_path: Path) -> Iterator[None]:
    """Serialise stale-lock takeovers of one lock among the processes of this host.

    Only processes on the holder's host can prove it dead, so a host-local mutex (``flock`` on a file
    in the local temporary directory) makes "re-read, prove stale, remove" one atomic step.
    """
    key = hashlib.sha256(str(lock_path.resolve()).encode()).hexdigest()[:24]
    mutex = os.path.join(tempfile.gettempdir(), f"affectcache-takeover-{key}.mutex")
    fd = os.open(mutex, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
