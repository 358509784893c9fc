"""Keys and bytes under a store root: the few operations fragments and the catalog need.

Two implementations of one small interface: :class:`LocalKeys` (a directory; plain ``os`` calls, atomic
replace and atomic create-if-absent) and :class:`ZarrKeys` (any zarr ``Store``, i.e. fsspec URLs such as
``s3://`` or ``memory://``; an object store's PUT is atomic, create-if-absent is as good as the backend's
``set_if_not_exists``). Keys are ``/``-separated paths relative to the store root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from zarr.abc.store import Store


class Keys(Protocol):
    """Byte access to a store root (what fragments and the catalog are written with)."""

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when absent."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``start`` (FileNotFoundError when absent)."""

    def read_into(self, key: str, start: int, out: memoryview) -> None:
        """Fill ``out`` with the bytes of ``key`` from ``start`` (FileNotFoundError when absent)."""

    def put(self, key: str, data: bytes) -> None:
        """Write ``key`` atomically (readers see the old or the new value, never part of one)."""

    def put_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` atomically unless it exists; False (nothing written) when it does."""

    def put_many(self, items: Iterable[tuple[str, bytes | bytearray]]) -> None:
        """Write several keys (not atomically: for files nothing points at yet)."""

    def list(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (files and folders), unsorted; empty when absent."""

    def delete_tree(self, prefix: str) -> None:
        """Delete ``prefix`` and everything under it (no error when absent)."""

    def delete_trees(self, prefixes: Iterable[str]) -> None:
        """Delete several prefixes (in parallel where the backend allows)."""


class LocalKeys:
    """Keys as files under a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with open(self._path(key), "rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def read_into(self, key: str, start: int, out: memoryview) -> None:
        with open(self._path(key), "rb", buffering=0) as fh:
            fh.seek(start)
            done = 0
            while done < out.nbytes:
                n = fh.readinto(out[done:])
                if not n:
                    raise OSError(f"{self._path(key)} is shorter than expected")
                done += n

    def _tmp(self, path: Path, data: bytes) -> Path:
        """``data`` in a fresh temporary file beside ``path`` (one create + write)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
        try:
            _write_file(str(tmp), data, os.O_EXCL)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._tmp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._tmp(path, data)
        try:
            # link() fails if the target exists, and the target appears complete: an atomic
            # create-if-absent that a crash can never leave half-written.
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def put_many(self, items: Iterable[tuple[str, bytes | bytearray]]) -> None:
        # Plain os calls on string paths: a fragment is a dozen small files, and pathlib / buffered
        # file objects cost more than the writes themselves.
        root = os.fspath(self.root)
        made: set[str] = set()
        for key, data in items:
            path = f"{root}/{key}"
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            _write_file(path, data)

    def list(self, prefix: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(self._path(prefix)) if not e.name.endswith(".partial")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete_tree(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


    def delete_trees(self, prefixes: Iterable[str]) -> None:
        # Deleting folders is journal-bound on most filesystems: threads overlap the waits. The pool
        # lives on (one per process): a checkpoint trims a few dozen records, and starting eight
        # threads for each trim cost more than the deletes.
        list(_delete_pool().map(self.delete_tree, prefixes))


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _delete_pool() -> ThreadPoolExecutor:
    """This process's deletion threads (a forked child makes its own: threads do not survive a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=8, thread_name_prefix="affectcache-delete"))
    return _POOL[1]


def _write_file(path: str, data: bytes | bytearray, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class ZarrKeys:
    """Keys in any zarr ``Store`` (fsspec-backed remote or in-memory stores)."""

    def __init__(self, store: Store, prefix: str = "") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _sync(coro: object) -> object:
        from zarr.core.sync import sync

        return sync(coro)  # type: ignore[arg-type]

    def get(self, key: str) -> bytes | None:
        from zarr.core.buffer import default_buffer_prototype

        buf = self._sync(self.store.get(self._key(key), default_buffer_prototype()))
        return None if buf is None else bytes(buf.to_bytes())  # type: ignore[attr-defined]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        from zarr.abc.store import RangeByteRequest
        from zarr.core.buffer import default_buffer_prototype

        buf = self._sync(self.store.get(self._key(key), default_buffer_prototype(),
                                        RangeByteRequest(start, start + length)))
        if buf is None:
            raise FileNotFoundError(self._key(key))
        return bytes(buf.to_bytes())  # type: ignore[attr-defined]

    def read_into(self, key: str, start: int, out: memoryview) -> None:
        data = self.get_range(key, start, out.nbytes)
        if len(data) != out.nbytes:
            raise OSError(f"{self._key(key)} is shorter than expected")
        out[:] = data

    def put(self, key: str, data: bytes) -> None:
        from zarr.core.buffer import cpu

        self._sync(self.store.set(self._key(key), cpu.Buffer.from_bytes(data)))

    def put_new(self, key: str, data: bytes) -> bool:
        from zarr.core.buffer import cpu
        from zarr.storage import FsspecStore

        if isinstance(self.store, FsspecStore):
            # zarr's FsspecStore.set_if_not_exists checks, then writes: two committers can both pass the
            # check. fsspec's create mode is the backend's own conditional write where it has one
            # (S3 If-None-Match, GCS generation 0, memory, ...), so exactly one creator wins.
            path = f"{self.store.path.rstrip('/')}/{self._key(key)}"
            try:
                self._sync(self.store.fs._pipe_file(path, data, mode="create"))
            except FileExistsError:
                return False
            return True
        if self.get(key) is not None:
            return False
        self._sync(self.store.set_if_not_exists(self._key(key), cpu.Buffer.from_bytes(data)))
        return self.get(key) == data

    def put_many(self, items: Iterable[tuple[str, bytes | bytearray]]) -> None:
        from zarr.core.buffer import cpu

        async def write_all() -> None:
            await asyncio.gather(*(self.store.set(self._key(k), cpu.Buffer.from_bytes(v)) for k, v in items))

        self._sync(write_all())

    def list(self, prefix: str) -> list[str]:
        async def names() -> list[str]:
            return [k async for k in self.store.list_dir(self._key(prefix))]

        found: list[str] = self._sync(names())  # type: ignore[assignment]
        return found

    def delete_tree(self, prefix: str) -> None:
        self._sync(self.store.delete_dir(self._key(prefix)))
        with contextlib.suppress(FileNotFoundError, KeyError):
            self._sync(self.store.delete(self._key(prefix)))

    def delete_trees(self, prefixes: Iterable[str]) -> None:
        for prefix in prefixes:
            self.delete_tree(prefix)
