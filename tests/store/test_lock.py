"""Build locks: refusal while held, release by the kernel when the holder dies, the link-based fallback
without flock, and never two holders under a hammering of processes (dead holders included)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from affectcache.store import lock as lock_module
from affectcache.store.errors import LockHeldError
from affectcache.store.lock import ModalityLock
from affectcache.store.zarr_store import FeatureStore

HAMMER = Path(__file__).with_name("lock_hammer.py")


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the store's filesystem has no flock (some network filesystems)."""

    def refuse(fd: int) -> bool:
        raise lock_module._NoOsLock("no flock here (test)")

    monkeypatch.setattr(lock_module, "_os_lock", refuse)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def _plant(lock: ModalityLock, content: str) -> Path:
    assert lock.path is not None
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(content)
    return lock.path


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "link-fallback"])
def test_second_builder_is_refused_with_holder_details(store_path: Path, flock: bool,
                                                       request: pytest.FixtureRequest) -> None:
    if not flock:
        request.getfixturevalue("no_flock")
    fs = FeatureStore(store_path)
    with ModalityLock(fs, "mfcc") as lock:
        assert lock.path is not None
        holder = json.loads(lock.path.read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(LockHeldError, match=rf"being built by pid {os.getpid()} on host .*wait") as err:
            ModalityLock(fs, "mfcc").acquire()
        assert ("delete" in str(err.value)) is not flock  # the kernel frees a flock: nothing to delete
        with ModalityLock(fs, "other"):  # other modalities are independent
            pass
        assert lock.holder() == holder
    assert not lock.path.exists()
    with ModalityLock(fs, "mfcc"):
        pass


@pytest.mark.slow
def test_lock_of_killed_holder_is_free_at_once(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    script = ("import sys, time; from affectcache.store.zarr_store import FeatureStore; "
              "from affectcache.store.lock import ModalityLock; "
              f"ModalityLock(FeatureStore({str(store_path)!r}), 'mfcc').acquire(); "
              "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}"):
            ModalityLock(fs, "mfcc").acquire()
    finally:
        proc.kill()
        proc.wait()
    with ModalityLock(fs, "mfcc") as lock:  # no takeover needed: the kernel released it
        assert lock.holder() is not None
        assert lock.holder()["pid"] == os.getpid()  # type: ignore[index]


@pytest.mark.parametrize("content", ["", "{not json", json.dumps({"host": "elsewhere", "pid": 1})])
def test_leftover_lock_file_without_a_holder_never_blocks(store_path: Path, content: str) -> None:
    # An empty file (a writer killed or out of space between create and write, as older versions could
    # leave), garbage, or another host's record: with flock only a live holder counts.
    fs = FeatureStore(store_path)
    _plant(ModalityLock(fs, "mfcc"), content)
    with ModalityLock(fs, "mfcc") as lock:
        assert lock.holder()["pid"] == os.getpid()  # type: ignore[index]


@pytest.mark.usefixtures("no_flock")
def test_fallback_takes_over_only_a_provably_dead_local_holder(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    path = _plant(ModalityLock(fs, "mfcc"), json.dumps({"host": socket.gethostname(),
                                                         "pid": _dead_pid(), "since": "then"}))
    with ModalityLock(fs, "mfcc") as lock:
        assert lock.holder()["pid"] == os.getpid()  # type: ignore[index]
    assert not path.exists()

    other_host = ModalityLock(fs, "labels/valence")
    _plant(other_host, json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))
    with pytest.raises(LockHeldError, match=r"host elsewhere.*delete"):
        other_host.acquire()


@pytest.mark.usefixtures("no_flock")
def test_fallback_empty_lock_file_is_stale_only_when_old(store_path: Path) -> None:
    fs = FeatureStore(store_path)
    path = _plant(ModalityLock(fs, "mfcc"), "")
    with pytest.raises(LockHeldError, match="another process"):
        ModalityLock(fs, "mfcc").acquire()
    old = time.time() - 2 * lock_module.EMPTY_LOCK_STALE_S
    os.utime(path, (old, old))
    with ModalityLock(fs, "mfcc") as lock:
        assert json.loads(path.read_text())["pid"] == os.getpid()  # written whole, then linked
        assert lock.held


def test_lock_files_do_not_disturb_listing(store_path: Path) -> None:
    import warnings

    fs = FeatureStore(store_path)
    with ModalityLock(fs, "mfcc"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureStore(store_path).modalities() == []


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, True], ids=["flock", "link-fallback"])
def test_hammered_lock_never_has_two_holders(tmp_path: Path, fallback: bool) -> None:
    # 4 processes x 200 rounds, every 10th round a holder that dies holding the lock. The lock code of
    # before (O_EXCL + unlink of a stale file) let two holders in within a few hundred rounds.
    cmd = [sys.executable, str(HAMMER), str(tmp_path / "s.zarr"), "--workers", "4", "--rounds", "200",
           "--dead-every", "10", *(["--fallback"] if fallback else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["violations"] == 0, counts
    assert counts["held"] + counts["dead_holders"] >= 100, counts  # contended, and yet progressing
    assert counts["dead_holders"] >= 4, counts  # the lock came free after holders died holding it
    assert counts["refused"] > 0, counts  # they really competed
