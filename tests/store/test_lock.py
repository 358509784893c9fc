"""Build locks: refusal while held, stale-lock recovery, release."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from affectcache.store.errors import LockHeldError
from affectcache.store.lock import ModalityLock
from affectcache.store.zarr_store import FeatureStore

if TYPE_CHECKING:
    from pathlib import Path


def test_second_builder_is_refused_with_holder_details(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    with ModalityLock(fs, "mfcc") as lock:
        assert lock.path is not None
        assert lock.path.exists()
        with pytest.raises(LockHeldError, match=r"being built by pid \d+ on host .*delete"):
            ModalityLock(fs, "mfcc").acquire()
        with ModalityLock(fs, "other"):  # other modalities are independent
            pass
    assert not lock.path.exists()
    with ModalityLock(fs, "mfcc"):
        pass


def test_lock_of_dead_process_is_recovered(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(proc.stdout)
    lock = ModalityLock(fs, "mfcc")
    assert lock.path is not None
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "since": "then"}))
    with ModalityLock(fs, "mfcc"):
        assert json.loads(lock.path.read_text())["pid"] != dead_pid


def test_lock_of_other_host_is_never_stolen(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    lock = ModalityLock(fs, "labels/valence")
    assert lock.path is not None
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))
    with pytest.raises(LockHeldError, match="host elsewhere"):
        lock.acquire()


def test_lock_files_do_not_disturb_listing(store_path: Path) -> None:
    import warnings

    fs = FeatureStore(store_path)
    with ModalityLock(fs, "mfcc"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureStore(store_path).modalities() == []
