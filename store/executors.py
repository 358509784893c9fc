"""Executors for the build runner: anything with ``submit(fn, *args)`` works.

Three are provided: an in-process one (``--workers 0``, for debugging), a local Dask cluster sized to the
machine (the default), and a connection to an existing Dask scheduler (``--scheduler ADDRESS``). A plain
``concurrent.futures`` executor also works. Tasks of GPU extractors ask Dask for the ``GPU`` resource, so
on a cluster started with ``dask worker ADDRESS --resources GPU=1`` they land on GPU workers only.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

logger = logging.getLogger(__name__)


class SupportsSubmit(Protocol):
    """What the build runner needs from an executor."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


class DeferredFuture:
    """Result of :class:`InProcessExecutor`: the task runs when its result is first asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._call: Callable[[], Any] | None = lambda: fn(*args, **kwargs)
        self._result: Any = None

    def result(self) -> Any:
        if self._call is not None:
            call, self._call = self._call, None
            self._result = call()
        return self._result

    def cancel(self) -> bool:
        self._call = None
        return True


class InProcessExecutor:
    """Runs tasks one after the other in the calling process, in submission order.

    Tasks run lazily (when the runner collects them), so a task that raises stops the run before later
    tasks start, exactly as on a cluster where the driver cancels pending work.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> DeferredFuture:
        return DeferredFuture(fn, args, kwargs)


def is_dask_client(executor: object) -> bool:
    """Whether ``executor`` is a ``distributed.Client`` (without importing distributed if absent)."""
    cls = type(executor)
    return cls.__name__ == "Client" and cls.__module__.startswith("distributed")


def submit_task(executor: SupportsSubmit, fn: Callable[..., Any], *args: Any, gpu: bool = False) -> Any:
    """Submit ``fn(*args)``; on Dask, tasks are never deduplicated and GPU tasks request ``GPU=1``."""
    if is_dask_client(executor):
        kwargs: dict[str, Any] = {"pure": False}
        if gpu:
            kwargs["resources"] = {"GPU": 1}
        return executor.submit(fn, *args, **kwargs)
    return executor.submit(fn, *args)


def as_completed(futures: Iterable[Any]) -> Iterator[Any]:
    """Yield futures as they finish, for stdlib and Dask futures alike."""
    futures = list(futures)
    if futures and isinstance(futures[0], DeferredFuture):
        yield from futures
    elif futures and type(futures[0]).__module__.startswith("distributed"):
        from distributed import as_completed as dask_as_completed

        yield from dask_as_completed(futures)
    else:
        yield from cf.as_completed(futures)


def cancel_all(futures: Iterable[Any]) -> None:
    """Cancel futures that have not started (best effort; running tasks finish on their own)."""
    for future in futures:
        with contextlib.suppress(Exception):
            future.cancel()


LOCAL_WORKER_CONFIG: dict[str, Any] = {
    # No statistical profiler: sampling every 10 ms cost a CPU-bound task ~10 % (a search trial's time on
    # a 2-worker cluster, measured); the dashboard's profile page is empty instead.
    "distributed.worker.profile.enabled": False,
    # Dask's housekeeping callbacks (event-loop tick every 20 ms, resource monitor every 0.5 s, memory
    # monitor every 0.1 s) take the GIL from the task thread; on a core a task keeps busy, relaxing them
    # made a 16-trial search on 2 local workers ~6 % faster (3 A/B pairs, noisy). Memory limits and
    # "event loop unresponsive" warnings still work, at this coarser rate.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}
"""Dask settings of the local clusters this package starts (a remote scheduler keeps its own)."""


@contextlib.contextmanager
def local_dask_client(n_workers: int, *, resources: dict[str, float] | None = None) -> Iterator[Any]:
    """A ``LocalCluster`` of ``n_workers`` single-threaded worker processes and its client.

    Each worker gets one BLAS/OpenMP thread: the workers already use every core between them.
    ``resources`` (e.g. ``{"GPU": 1}``) are offered by every worker, so tasks requesting them can run.
    """
    import dask
    from distributed import Client, LocalCluster

    from affectcache.store.stopping import quiet_worker_logs

    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    # Dask's own warnings (a stop's cancellations, lost workers) only at the package's DEBUG level (the
    # CLI's --debug), and the workers' logs not at all otherwise: every task error reaches the driver,
    # which reports it. The preload makes workers leave Ctrl-C to the driver.
    debug = logging.getLogger("affectcache").isEnabledFor(logging.DEBUG)
    # Any free port for the dashboard: several local clusters may run side by side.
    with dask.config.set(LOCAL_WORKER_CONFIG):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0",
                               silence_logs=logging.WARNING if debug else logging.ERROR,
                               env=env, preload=["affectcache.store.stopping"], resources=resources)
    client = Client(cluster)
    if not debug:
        client.run(quiet_worker_logs)
    logger.info("local Dask cluster: %d worker process(es), dashboard %s", n_workers, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        # Workers that ran torch can take over 4 s to exit, and the nanny then warns that it kills
        # them; every result is already collected and written by then, so that warning is noise.
        nanny_logger = logging.getLogger("distributed.nanny")
        level = nanny_logger.level
        nanny_logger.setLevel(logging.ERROR)
        try:
            cluster.close()
        finally:
            nanny_logger.setLevel(level)


@contextlib.contextmanager
def scheduler_client(address: str) -> Iterator[Any]:
    """A client of an existing Dask scheduler (``tcp://host:8786`` or a scheduler file path)."""
    from distributed import Client

    client = Client(scheduler_file=address) if os.path.isfile(address) else Client(address)
    try:
        yield client
    finally:
        client.close()


def default_worker_count() -> int:
    """Worker processes for a local cluster: one per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
