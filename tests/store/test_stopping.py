"""Stopping: SIGTERM raises like Ctrl-C, driver writes hold signals until done; environment errors are
recognised (through causes too) and named with their remedy."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from typing import TYPE_CHECKING

import pytest

from affectcache.store.env_errors import describe_environment_error, find_environment_error
from affectcache.store.errors import StoreError
from affectcache.store.stopping import StopRequested, signals_deferred, stop_on_sigterm

if TYPE_CHECKING:
    from pathlib import Path


def _signal_inside(signum: int, *, deferred: bool, log: list[str]) -> None:
    """Send ``signum`` to this process inside ``stop_on_sigterm`` (and a deferred write, if asked)."""
    with stop_on_sigterm():
        with signals_deferred() if deferred else contextlib.nullcontext():
            os.kill(os.getpid(), signum)  # Python runs the handler at once, right after this call
            log.append("after the signal")
        log.append("after the block")


def test_sigterm_raises_stop_requested_with_exit_code_143() -> None:
    before = signal.getsignal(signal.SIGTERM)
    log: list[str] = []
    with pytest.raises(StopRequested) as err:
        _signal_inside(signal.SIGTERM, deferred=False, log=log)
    assert log == []
    assert err.value.exit_code == 143
    assert str(err.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGTERM, StopRequested),
                                                (signal.SIGINT, KeyboardInterrupt)])
def test_signals_wait_for_the_end_of_a_deferred_write(signum: int, raised: type[BaseException]) -> None:
    log: list[str] = []
    with pytest.raises(raised):
        _signal_inside(signum, deferred=True, log=log)
    assert log == ["after the signal"]  # the write finished; then the signal stopped the run


def test_a_quiet_deferred_block_changes_nothing() -> None:
    with stop_on_sigterm(), signals_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_environment_errors_are_found_through_causes(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    chunk = store / "mfcc" / "v1" / "values" / "c" / "0"
    full = OSError(errno.ENOSPC, "No space left on device", str(chunk))
    wrapped = StoreError("could not write v1")
    wrapped.__cause__ = full  # as `raise StoreError(...) from full` leaves it
    assert find_environment_error(wrapped) is full
    assert describe_environment_error(wrapped, where=str(store)) == (
        f"no space left on the device holding {store}: free space and rerun")
    outside = PermissionError(errno.EACCES, "Permission denied", "/opt/models/x.bin")
    assert describe_environment_error(outside, where=str(store)) == (
        "permission denied on /opt/models/x.bin: give this user write access, or use another location "
        "and rerun")
    assert "read-only filesystem" in str(describe_environment_error(OSError(errno.EROFS, "ro"), where="S"))
    assert describe_environment_error(OSError(errno.EDQUOT, "quota"), where="S") == (
        "disk quota exceeded on S: free space or raise the quota and rerun")
    assert describe_environment_error(FileNotFoundError(errno.ENOENT, "gone", "x")) is None
    assert describe_environment_error(RuntimeError("a bug")) is None


def test_local_workers_run_with_the_local_cluster_settings() -> None:
    # The relaxed housekeeping and the preload (Ctrl-C left to the driver) reach the worker processes.
    import dask

    from affectcache.store.executors import LOCAL_WORKER_CONFIG, local_dask_client

    def worker_view() -> dict[str, object]:
        import signal as sig

        return {"config": {k: dask.config.get(k) for k in LOCAL_WORKER_CONFIG},
                "sigint_ignored": sig.getsignal(sig.SIGINT) == sig.SIG_IGN}

    with local_dask_client(1) as client:
        (view,) = client.run(worker_view).values()
    assert view["config"] == LOCAL_WORKER_CONFIG
    assert view["sigint_ignored"] is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the driver keeps Ctrl-C
