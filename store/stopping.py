"""Stopping a build cleanly: SIGTERM handled like Ctrl-C, driver writes no signal can cut, quiet workers.

``kill``, systemd, Slurm and Kubernetes stop a process with SIGTERM, whose default action ends it on the
spot: the local Dask cluster is orphaned and nothing is cleaned up. Inside :func:`stop_on_sigterm`,
SIGTERM instead raises :class:`StopRequested` in the main thread, exactly where Ctrl-C raises
``KeyboardInterrupt``, so the same unwinding runs: pending tasks are cancelled, the local cluster shuts
down (running tasks are killed; their entries have no commit marker, so they stay invisible and are
redone), and the lock is released. A watchdog ends the process if that unwinding outlives
:data:`STOP_GRACE_S`, so a stop is always bounded.

Driver-side writes (failure records, commits) run inside :func:`signals_deferred`: a signal that arrives
during one is held until it is complete, so a stop never leaves a half-written record.

Workers of the local cluster load this module as a Dask preload (:func:`dask_setup`): they ignore SIGINT
(a terminal sends Ctrl-C to the whole process group; the driver alone decides, and shuts them down).
Unless ``--debug``, the driver also silences their logging (:func:`quiet_worker_logs`): a task's
exception is reported once, by the driver, in one line.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

logger = logging.getLogger(__name__)

STOP_GRACE_S = 60.0
"""Longest the unwinding after a stop signal may take before the process exits regardless."""
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop signal (SIGTERM) asked the run to end; a ``BaseException`` so ``except Exception`` in any
    library lets it through, as it does ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention for a process ended by this signal: 128 + its number (143 for SIGTERM)."""
        return 128 + self.signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _StopState:
    """What the handlers of this process know: whether a stop is under way, and what is deferred."""

    stopping: ClassVar[bool] = False
    deferred: ClassVar[list[int]] = []
    defer_depth: ClassVar[int] = 0
    watchdog: ClassVar[threading.Timer | None] = None


def _raise_stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise StopRequested(signum)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _StopState.stopping:
        logger.warning("%s again: already stopping (at most %.0f s)", signal.Signals(signum).name,
                       STOP_GRACE_S)
        return
    _begin_stop(signum)


def _begin_stop(signum: int) -> None:
    _StopState.stopping = True
    logger.warning("%s received: stopping (running tasks are cancelled; complete entries stay)",
                   signal.Signals(signum).name)
    _StopState.watchdog = threading.Timer(STOP_GRACE_S, _force_exit, args=(128 + signum,))
    _StopState.watchdog.daemon = True
    _StopState.watchdog.start()
    _raise_stop(signum)


def _force_exit(code: int) -> None:
    logger.error("stopping took longer than %.0f s: exiting now (complete entries stay; rerun the same "
                 "command to finish)", STOP_GRACE_S)
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`StopRequested` in the main thread (elsewhere: no-op)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        # The unwinding is over once the stop has left the block: no need to force the exit any more.
        if _StopState.watchdog is not None:
            _StopState.watchdog.cancel()
        _StopState.stopping, _StopState.watchdog = False, None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then act on the first one that arrived.

    For short driver-side writes that must be all or nothing. Outside the main thread (where signals
    are not delivered) it does nothing.
    """
    if not _in_main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    if _StopState.defer_depth == 0:
        previous = {int(sig): signal.signal(sig, _defer) for sig in _STOP_SIGNALS}
    _StopState.defer_depth += 1
    try:
        yield
    finally:
        _StopState.defer_depth -= 1
        if _StopState.defer_depth == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            pending, _StopState.deferred = _StopState.deferred, []
            if pending:
                _deliver(pending[0], previous.get(pending[0]))


def _defer(signum: int, frame: FrameType | None) -> None:
    _StopState.deferred.append(signum)


def _deliver(signum: int, handler: Any) -> None:
    """Act on a held signal as the handler in place before the deferral would have."""
    if handler is _on_sigterm:
        if not _StopState.stopping:
            _begin_stop(signum)
    elif callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


# ---- Dask worker preload ------------------------------------------------------------------------------
def quiet_worker_logs() -> None:
    """Silence Dask's own logging in a local worker process (run there by the driver unless --debug).

    Whatever goes wrong in a task reaches the driver as the task's exception; what a worker logs besides
    is its side of the shutdown (a heartbeat to a scheduler that just closed, cancelled tasks)."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def dask_setup(worker: Any) -> None:
    """Dask preload hook, run in each local worker process as it starts (see the module docstring)."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_teardown(worker: Any) -> None:
    """Dask preload hook, run in each local worker process as it closes: every result has reached the
    driver by then, so the interpreter's final garbage collection is skipped (``gc.freeze``). Over the
    heap torch, scipy and matplotlib leave, that collection alone made a worker's exit last ~1.2 s
    (0.2 s frozen), and the driver waits for it when it shuts the cluster down."""
    gc.freeze()
