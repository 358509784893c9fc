"""Hammer one modality lock from several processes; run as a script by ``test_lock.py``.

Every worker tries to take the lock round after round. A holder proves it is alone by creating an
"occupied" marker with ``O_EXCL`` (it fails if another holder is inside) and removes it before letting
go. Every ``--dead-every``-th round the worker forks a child that takes the lock and dies holding it
(``os._exit``, no release): the lock must come free (OS lock) or be taken over (fallback) without ever
admitting two holders. Prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from affectcache.store import lock as lock_module
from affectcache.store.errors import LockHeldError
from affectcache.store.zarr_store import FeatureStore


def _no_os_lock(fd: int) -> bool:
    raise lock_module._NoOsLock("forced by the test: no flock")


HELD, REFUSED, VIOLATION = 0, 1, 3


def _hold(lock: lock_module.ModalityLock, marker: str) -> int:
    """Take the lock and prove exclusivity (the lock stays held); HELD, REFUSED or VIOLATION."""
    try:
        lock.acquire()
    except LockHeldError:
        return REFUSED
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return VIOLATION
    time.sleep(0.0005)
    os.unlink(marker)
    return HELD


def _worker(store: str, marker: str, rounds: int, dead_every: int, start: float) -> dict[str, int]:
    fs = FeatureStore(store)
    lock = lock_module.ModalityLock(fs, "mfcc")
    counts = {"held": 0, "refused": 0, "dead_holders": 0}
    while time.time() < start:
        pass
    for i in range(rounds):
        if dead_every and i % dead_every == dead_every - 1:
            pid = os.fork()
            if pid == 0:  # the child dies holding the lock
                os._exit(_hold(lock_module.ModalityLock(fs, "mfcc"), marker))
            _, status = os.waitpid(pid, 0)
            outcome = os.WEXITSTATUS(status)
            counts["dead_holders"] += outcome == HELD
        else:
            outcome = _hold(lock, marker)
            if outcome == HELD:
                lock.release()
                counts["held"] += 1
            counts["refused"] += outcome == REFUSED
        if outcome == VIOLATION:
            return {**counts, "violations": 1}
    return {**counts, "violations": 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--dead-every", type=int, default=10)
    parser.add_argument("--fallback", action="store_true", help="Pretend the filesystem has no flock.")
    args = parser.parse_args()
    if args.fallback:
        lock_module._os_lock = _no_os_lock
    FeatureStore(args.store).private_dir()  # create the store before the race
    marker = os.path.join(args.store, "occupied")
    start = time.time() + 0.3
    readers = []
    for _ in range(args.workers):
        read_fd, write_fd = os.pipe()
        if os.fork() == 0:
            os.close(read_fd)
            result = _worker(args.store, marker, args.rounds, args.dead_every, start)
            os.write(write_fd, json.dumps(result).encode())
            os._exit(0)
        os.close(write_fd)
        readers.append(read_fd)
    totals: dict[str, int] = {}
    for fd in readers:
        with os.fdopen(fd) as fh:
            text = fh.read()
        result = json.loads(text) if text else {"violations": 1}
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
