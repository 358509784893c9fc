"""Input modalities for the VA trainers: loaded whole (one ``FeatureStore.load``), never copied per example.

* :class:`ClockInput`: a frame-level modality put on the frame clock *by index*: for every clock row, the
  packed row it takes (the nearest valid row, Team RAS's fill rule, within ``max_fill_s``), whether that
  is usable, and whether it was *filled* (the clock frame has no row of its own within half a frame).
  Batches gather ``values[index[rows]]``; nothing is materialised on the clock.
  :func:`align_window_input` does the same for window rows (``start_s``/``end_s``, e.g. AST's 4 s
  windows): a frame takes the window that covers it (the one whose centre is nearest when windows
  overlap); a frame no valid window covers is *filled* from the nearest valid window.
* :func:`load_input`: the packed modality plus its column range (e.g. GRADA's 256-d embedding out of the
  266 stored values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from affectcache.store.align import nearest_rows
from affectcache.store.errors import StoreError
from affectcache.store.packed import PackedModality
from affectcache.store.usable import Usability, usability

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.data.clock import FrameClock

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, eq=False)
class InputModality:
    """A packed modality and the columns of its values a model reads."""

    packed: PackedModality
    """The whole modality (the videos asked for, in order)."""
    columns: tuple[int, int] | None
    """``(start, stop)`` of the value columns used; None = all."""

    @property
    def name(self) -> str:
        return self.packed.modality

    @property
    def width(self) -> int:
        if self.columns is not None:
            return self.columns[1] - self.columns[0]
        shape = self.packed.values.shape
        return int(np.prod(shape[1:])) if len(shape) > 1 else 1

    def matrix(self) -> npt.NDArray[np.floating]:
        """(n_rows, width) values, as stored (float16 stays float16); a view when no column range is set."""
        values = self.packed.values.reshape(self.packed.values.shape[0], -1)
        if self.columns is not None:
            values = values[:, self.columns[0]:self.columns[1]]
        return values


def load_input(fs: FeatureStore, name: str, video_ids: Sequence[str], columns: tuple[int, int] | None,
               ) -> InputModality:
    """Load the entries of ``video_ids`` that the modality has (missing ones are named with their cause, then
    masked).

    Raises:
        StoreError: The modality holds text, the column range does not fit its values, or it has none of
            the videos.
    """
    # Items that failed or do not apply upstream, or are not built, are masked: one warning names them
    # with their recorded cause.
    state = usability(fs, [name], video_ids)
    skipped = dict(state.skipped)
    skipped.update({vid: f"{name} not built" for vid in state.not_built.get(name, [])})
    Usability(usable=state.usable, skipped=skipped).warn(f"{name} input (frames masked)")
    present = state.usable
    if not present:
        raise StoreError(f"{name} has none of the {len(video_ids)} videos; build it first "
                         f"(affectcache extract {name} ...)")
    packed = fs.load(name, present)
    if packed.kind == "text" or packed.values.dtype.kind not in "fiub":
        raise StoreError(f"{name} holds text; train on an embedding of it (text-embedding)")
    width = int(np.prod(packed.values.shape[1:])) if packed.values.ndim > 1 else 1
    if columns is not None and not (0 <= columns[0] < columns[1] <= width):
        raise StoreError(f"input_columns {list(columns)} do not fit {name}'s {width} values per row")
    return InputModality(packed=packed, columns=columns)


@dataclass(frozen=True, kw_only=True, eq=False)
class ClockInput:
    """A frame-level input on the frame clock, by index (see the module docstring)."""

    source: InputModality
    """The packed input."""
    index: npt.NDArray[np.int64]
    """(n_clock,) packed row of every clock row (0 where none is usable)."""
    valid: npt.NDArray[np.bool_]
    """(n_clock,) whether the row's input is usable (a valid row within ``max_fill_s``)."""
    filled: npt.NDArray[np.bool_]
    """(n_clock,) whether the input came from another frame (no own row in [t − half frame, t + half))."""


def align_frame_input(source: InputModality, clock: FrameClock, *, max_fill_s: float | None) -> ClockInput:
    """Put a frame-level input on the clock with the nearest-valid rule (see the module docstring)."""
    packed = source.packed
    if packed.kind != "frame":
        raise StoreError(f"{packed.modality} has {packed.kind} rows; this view needs a frame-level input")
    n = clock.n_rows
    index = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    filled = np.ones(n, dtype=bool)
    times = packed.row_arrays["time_s"]
    for i, vid in enumerate(clock.video_ids):
        src = packed.rows(vid) if vid in packed else slice(0, 0)
        if src.stop == src.start:
            continue
        dst = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        pick, usable = nearest_rows(times[src], packed.mask[src], clock.time_s[dst],
                                    max_distance_s=max_fill_s, valid_only=True)
        index[dst] = pick + src.start
        valid[dst] = usable
        half_frame = 0.5 / clock.fps[i] if np.isfinite(clock.fps[i]) and clock.fps[i] > 0 else 0.0
        # A frame owns the rows in [t - half, t + half): each source row belongs to one clock frame.
        offset = times[src][pick] - clock.time_s[dst]
        filled[dst] = ~((offset >= -half_frame - 1e-9) & (offset < half_frame - 1e-9))
    return ClockInput(source=source, index=index, valid=valid, filled=filled)


WINDOW_CHUNK = 4096
"""Clock frames compared with a video's windows at once (bounds the (frames, windows) matrix)."""


def align_window_input(source: InputModality, clock: FrameClock, *, max_fill_s: float | None) -> ClockInput:
    """Expand window rows (``start_s``/``end_s``) to the clock frames they cover, by index.

    A frame at ``t`` takes the valid window with ``start_s <= t < end_s`` whose centre is nearest ``t``
    (overlapping windows: every frame gets one row, no averaging of embeddings); it is ``filled`` when no
    valid window covers it and it took the window nearest in time (distance from ``t`` to the window's
    span), usable only within ``max_fill_s`` (None: any distance).
    """
    packed = source.packed
    if "start_s" not in packed.row_arrays:
        raise StoreError(f"{packed.modality} has {packed.kind} rows; expected windows with start_s/end_s")
    n = clock.n_rows
    index = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    filled = np.ones(n, dtype=bool)
    starts, ends = packed.row_arrays["start_s"], packed.row_arrays["end_s"]
    limit = np.inf if max_fill_s is None else float(max_fill_s)
    for i, vid in enumerate(clock.video_ids):
        src = packed.rows(vid) if vid in packed else slice(0, 0)
        rows = np.flatnonzero(packed.mask[src]) + src.start
        if rows.size == 0:
            continue
        s, e = starts[rows], ends[rows]
        centre = 0.5 * (s + e)
        for lo in range(int(clock.offsets[i]), int(clock.offsets[i + 1]), WINDOW_CHUNK):
            hi = min(lo + WINDOW_CHUNK, int(clock.offsets[i + 1]))
            t = clock.time_s[lo:hi, None]
            gap = np.maximum(np.maximum(s - t, t - e), 0.0)           # 0 inside [start, end]
            inside = (s <= t) & (t < e)
            # Covering windows first (nearest centre), then the nearest span; ties to the earlier row.
            key = np.where(inside, -1.0 / (1.0 + np.abs(centre - t)), gap)
            pick = np.argmin(key, axis=1)
            own = inside[np.arange(hi - lo), pick]
            index[lo:hi] = rows[pick]
            filled[lo:hi] = ~own
            valid[lo:hi] = own | (gap[np.arange(hi - lo), pick] <= limit)
    return ClockInput(source=source, index=index, valid=valid, filled=filled)
