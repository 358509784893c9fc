"""Timing shared by the benchmark modules: the best of a few runs (these machines are noisy)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def best_interleaved(fns: list[Callable[[], Any]], repeat: int, *,
                     clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Best of ``repeat`` for each function, run in turns (A B A B ...) so load swings hit both;
    ``clock=time.process_time`` measures this process's CPU seconds instead of wall time."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, sink in zip(fns, times, strict=True):
            started = clock()
            fn()
            sink.append(clock() - started)
    return [min(t) for t in times]
