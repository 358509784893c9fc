"""Aligning a label track to another clock (a video's frame times, a feature's window times).

Label tracks are stored at their native rate (per video frame, or 10 Hz for SEWA) with a validity mask;
trainers need them on the clock of the features they train on. :func:`align_track` does that with an
explicitly chosen method (there is no default, because the right one depends on the label):

* ``nearest``: the value of the track row nearest in time, when that row is valid and lies within
  ``max_distance_s`` (default: half the track's median row spacing, so targets beyond the track's ends
  get no value). Right for per-frame annotations on the same video clock.
* ``nearest-valid``: the nearest *valid* row, when it lies within ``max_distance_s`` (None: any
  distance). Team RAS's fill rule for frame features: a frame without a face crop takes the features of
  the nearest frame that has one.
* ``linear``: linear interpolation between the two track rows around the target, when both are valid;
  targets outside the track's first..last time get no value (no extrapolation). Right for continuous
  traces sampled slower than the target clock.
* ``window-mean``: the mean of the valid rows within ``window_s / 2`` of the target (edges included);
  no value when the window holds no valid row. Right for summarising a fast track on a slow clock.

Targets without a value come back as 0 with ``mask`` false, the store's convention for invalid rows.

Trainers that index packed arrays instead of copying them use :func:`nearest_rows` (which row each target
takes). Segment/window rows (``start_s``/``end_s``) go onto a clock with :func:`interval_mean`: every
target inside a segment's ``[start_s, end_s)`` gets the mean of all valid segments covering it (Team RAS's
interval assignment with overlap averaging); targets no segment covers get no value.
:func:`align_feature_array` does either for a stored entry: frame entries by their times, segment entries
by ``method="overlap"`` (:func:`interval_mean`) or by any method above at the window centres.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from affectcache.extractors.core.records import FeatureArray

__all__ = ["ALIGN_METHODS", "AlignMethod", "SegmentMethod", "align_feature_array", "align_track",
           "interval_mean", "nearest_rows"]

AlignMethod: TypeAlias = Literal["nearest", "nearest-valid", "linear", "window-mean"]
SegmentMethod: TypeAlias = Literal["overlap"]
"""Segment entries only: :func:`interval_mean` over the segments containing each target."""
EDGE_TOLERANCE_S = 1e-9
"""Slack on ``window-mean`` window edges, far below any media clock's resolution."""
ALIGN_METHODS: tuple[str, ...] = get_args(AlignMethod)


def align_track(
    track_time_s: npt.ArrayLike,
    values: npt.ArrayLike,
    valid_mask: npt.ArrayLike | None,
    target_time_s: npt.ArrayLike,
    *,
    method: AlignMethod,
    window_s: float | None = None,
    max_distance_s: float | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Resample a track onto target times.

    Args:
        track_time_s: (n,) non-decreasing row times of the track, seconds.
        values: (n,) or (n, d) track values.
        valid_mask: (n,) row validity; None means every row is valid.
        target_time_s: (m,) times to produce values at (any order).
        method: ``nearest``, ``nearest-valid``, ``linear`` or ``window-mean`` (see the module docstring).
        window_s: Window width for ``window-mean`` (required there, refused otherwise).
        max_distance_s: For ``nearest``/``nearest-valid`` only: how far the chosen row may lie from the
            target; None means half the median spacing of the track's rows (0 for a one-row track) for
            ``nearest`` and no limit for ``nearest-valid``.

    Returns:
        ``(aligned, mask)``: (m,) or (m, d) float64 values (0 where ``mask`` is false) and the (m,)
        validity of each target.

    Raises:
        ValueError: Shapes disagree, times are not finite or not sorted, an unknown method, or a
            parameter given for a method that does not use it.
    """
    times = np.asarray(track_time_s, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    targets = np.asarray(target_time_s, dtype=np.float64)
    n = times.shape[0] if times.ndim == 1 else -1
    if times.ndim != 1 or vals.ndim not in (1, 2) or vals.shape[0] != n:
        raise ValueError(f"track times must be (n,) and values (n,) or (n, d); got {times.shape} and "
                         f"{vals.shape}")
    valid = np.ones(n, dtype=bool) if valid_mask is None else np.asarray(valid_mask, dtype=bool)
    if valid.shape != (n,):
        raise ValueError(f"valid_mask must have shape ({n},), got {valid.shape}")
    if targets.ndim != 1:
        raise ValueError(f"target times must be 1-D, got shape {targets.shape}")
    if not (np.isfinite(times).all() and np.isfinite(targets).all()):
        raise ValueError("track and target times must be finite")
    if n > 1 and not (np.diff(times) >= 0).all():
        raise ValueError("track times must be non-decreasing")
    valid = valid & np.isfinite(vals).reshape(n, -1).all(axis=1)  # a NaN row can never be a value
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment method {method!r}; choose one of {ALIGN_METHODS}")
    if method != "window-mean" and window_s is not None:
        raise ValueError(f"window_s is only used by method 'window-mean', not {method!r}")
    if method not in ("nearest", "nearest-valid") and max_distance_s is not None:
        raise ValueError(f"max_distance_s is only used by method 'nearest', not {method!r}")

    flat = vals.reshape(n, -1)
    out = np.zeros((targets.shape[0], flat.shape[1]), dtype=np.float64)
    if n == 0 or targets.shape[0] == 0:
        mask = np.zeros(targets.shape[0], dtype=bool)
    elif method in ("nearest", "nearest-valid"):
        pick, mask = _nearest_index(times, valid, targets, max_distance_s,
                                    valid_only=method == "nearest-valid")
        out[:] = flat[pick] if pick.size else 0.0
    elif method == "linear":
        mask = _linear(times, flat, valid, targets, out)
    else:
        if window_s is None or not (np.isfinite(window_s) and window_s > 0):
            raise ValueError(f"method 'window-mean' needs window_s > 0, got {window_s!r}")
        mask = _window_mean(times, flat, valid, targets, window_s, out)
    out[~mask] = 0.0
    return out.reshape((targets.shape[0], *vals.shape[1:])), mask


def align_feature_array(feats: FeatureArray, target_time_s: npt.ArrayLike, *,
                        method: AlignMethod | SegmentMethod, window_s: float | None = None,
                        max_distance_s: float | None = None,
                        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """A stored entry (e.g. ``FeatureStore.read("labels/valence", id)``) onto target times.

    Frame entries go through :func:`align_track` on their ``time_s``. Segment and clip entries (windows
    with ``start_s``/``end_s``) take either ``method="overlap"``, :func:`interval_mean` (each target gets
    the mean of the valid segments containing it), or any :func:`align_track` method applied at the window
    **centres** (e.g. ``"nearest"`` for the window whose centre is closest, ``"linear"`` between centres).

    Args:
        feats: A numeric entry (its times, ``values`` and ``mask`` are used).
        target_time_s: Times to produce values at.
        method: An :func:`align_track` method, or ``"overlap"`` (segments only).
        window_s: See :func:`align_track`.
        max_distance_s: See :func:`align_track`.

    Returns:
        ``(aligned, mask)`` as :func:`align_track`.

    Raises:
        ValueError: ``feats`` holds text, ``overlap`` on a frame entry, or as :func:`align_track`.
    """
    if feats.kind == "text":
        raise ValueError(f"{feats.video_id}: text rows have no numeric value to align; align their "
                         "embedding (text-embedding) instead")
    if feats.kind == "frame":
        if method == "overlap":
            raise ValueError(f"{feats.video_id}: method 'overlap' is for segment entries; frame entries take "
                             f"one of {ALIGN_METHODS}")
        assert feats.time_s is not None  # a frame entry always carries times (FeatureArray checks it)
        return align_track(feats.time_s, feats.values, feats.mask, target_time_s, method=method,
                           window_s=window_s, max_distance_s=max_distance_s)
    # Segment/clip rows always carry both (FeatureArray checks it).
    assert feats.start_s is not None
    assert feats.end_s is not None
    if method == "overlap":
        if window_s is not None or max_distance_s is not None:
            raise ValueError("method 'overlap' takes neither window_s nor max_distance_s")
        return interval_mean(feats.start_s, feats.end_s, feats.values, feats.mask, target_time_s)
    centres = 0.5 * (feats.start_s + feats.end_s)
    # Sorted starts do not sort centres when windows differ in length: order the rows by centre.
    order = np.argsort(centres, kind="stable")
    mask = None if feats.mask is None else feats.mask[order]
    return align_track(centres[order], feats.values[order], mask, target_time_s, method=method,
                       window_s=window_s, max_distance_s=max_distance_s)


def nearest_rows(track_time_s: npt.ArrayLike, valid_mask: npt.ArrayLike | None, target_time_s: npt.ArrayLike,
                 *, max_distance_s: float | None = None, valid_only: bool = False,
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Which track row each target takes under ``nearest`` (or ``nearest-valid`` with ``valid_only``).

    Args:
        track_time_s: (n,) non-decreasing row times.
        valid_mask: (n,) row validity; None = all valid.
        target_time_s: (m,) target times.
        max_distance_s: See :func:`align_track`.
        valid_only: Choose among valid rows only (``nearest-valid``).

    Returns:
        ``(index, usable)``: (m,) row indices into the track (0 where no row exists) and whether each
        target's row is valid and close enough.
    """
    times = np.asarray(track_time_s, dtype=np.float64)
    targets = np.asarray(target_time_s, dtype=np.float64)
    n = times.shape[0]
    valid = np.ones(n, dtype=bool) if valid_mask is None else np.asarray(valid_mask, dtype=bool)
    if times.ndim != 1 or valid.shape != (n,) or targets.ndim != 1:
        raise ValueError(f"expected (n,) times and mask and (m,) targets, got {times.shape}, {valid.shape}, "
                         f"{targets.shape}")
    if n > 1 and not (np.diff(times) >= 0).all():
        raise ValueError("track times must be non-decreasing")
    return _nearest_index(times, valid, targets, max_distance_s, valid_only=valid_only)


def _nearest_index(times: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_],
                   targets: npt.NDArray[np.float64], max_distance_s: float | None, *, valid_only: bool,
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    n = times.shape[0]
    if max_distance_s is None:
        half_step = 0.5 * float(np.median(np.diff(times))) if n > 1 else 0.0
        max_distance_s = np.inf if valid_only else half_step
    if not (max_distance_s >= 0 and not np.isnan(max_distance_s)):
        raise ValueError(f"max_distance_s must be a number >= 0, got {max_distance_s!r}")
    candidates = np.flatnonzero(valid) if valid_only else np.arange(n)
    if candidates.size == 0:
        return np.zeros(targets.shape[0], dtype=np.int64), np.zeros(targets.shape[0], dtype=bool)
    cand_times = times[candidates]
    k = cand_times.shape[0]
    right = np.clip(np.searchsorted(cand_times, targets, side="left"), 0, k - 1)
    left = np.clip(right - 1, 0, k - 1)
    # Ties go to the earlier row, so a target exactly between two rows is deterministic.
    pick_c = np.where(np.abs(targets - cand_times[left]) <= np.abs(cand_times[right] - targets), left, right)
    pick = candidates[pick_c].astype(np.int64)
    usable: npt.NDArray[np.bool_] = valid[pick] & (np.abs(times[pick] - targets) <= max_distance_s)
    return pick, usable


def interval_mean(start_s: npt.ArrayLike, end_s: npt.ArrayLike, values: npt.ArrayLike,
                  valid_mask: npt.ArrayLike | None, target_time_s: npt.ArrayLike,
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Segments onto target times: each target gets the mean of the valid segments whose
    ``[start_s, end_s)`` contains it; a target no valid segment covers gets no value (mask false).

    Args:
        start_s: (n,) segment starts, seconds.
        end_s: (n,) segment ends (exclusive).
        values: (n,) or (n, d) segment values.
        valid_mask: (n,) segment validity; None = all valid.
        target_time_s: (m,) target times (any order).

    Returns:
        ``(aligned, mask)``: (m,) or (m, d) float64 means (0 where ``mask`` is false) and (m,) coverage.
    """
    starts = np.asarray(start_s, dtype=np.float64)
    ends = np.asarray(end_s, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    targets = np.asarray(target_time_s, dtype=np.float64)
    n = starts.shape[0]
    if starts.shape != (n,) or ends.shape != (n,) or vals.ndim not in (1, 2) or vals.shape[0] != n:
        raise ValueError(f"segments need (n,) start_s/end_s and (n,) or (n, d) values; got {starts.shape}, "
                         f"{ends.shape}, {vals.shape}")
    valid = np.ones(n, dtype=bool) if valid_mask is None else np.asarray(valid_mask, dtype=bool)
    valid = valid & np.isfinite(vals).reshape(n, -1).all(axis=1) & (ends > starts)
    flat = np.where(valid[:, None], vals.reshape(n, -1), 0.0)
    order = np.argsort(targets, kind="stable")
    sorted_t = targets[order]
    m = targets.shape[0]
    # Each segment adds its value to the sorted targets in [lo, hi): difference arrays make it O(n + m).
    lo = np.searchsorted(sorted_t, starts, side="left")
    hi = np.searchsorted(sorted_t, ends, side="left")
    diff = np.zeros((m + 1, flat.shape[1]), dtype=np.float64)
    count = np.zeros(m + 1, dtype=np.float64)
    np.add.at(diff, lo[valid], flat[valid])
    np.add.at(diff, hi[valid], -flat[valid])
    np.add.at(count, lo[valid], 1.0)
    np.add.at(count, hi[valid], -1.0)
    total = np.cumsum(diff, axis=0)[:m]
    covered = np.rint(np.cumsum(count)[:m])
    out_sorted = np.where(covered[:, None] > 0, total / np.maximum(covered, 1.0)[:, None], 0.0)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    mask = np.empty(m, dtype=bool)
    mask[order] = covered > 0
    return out.reshape((m, *vals.shape[1:])), mask


def _linear(times: npt.NDArray[np.float64], flat: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_],
            targets: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    n = times.shape[0]
    inside = (targets >= times[0]) & (targets <= times[-1])
    # Last row with time <= target, and the row after it; targets on a row use that row alone.
    lo = np.clip(np.searchsorted(times, targets, side="right") - 1, 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    exact = times[lo] == targets
    span = times[hi] - times[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(span > 0, (targets - times[lo]) / np.where(span > 0, span, 1.0), 0.0)
    weight = np.where(exact, 0.0, weight)
    out[:] = flat[lo] * (1.0 - weight)[:, None] + flat[hi] * weight[:, None]
    mask: npt.NDArray[np.bool_] = inside & valid[lo] & (exact | valid[hi])
    return mask


def _window_mean(times: npt.NDArray[np.float64], flat: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_],
                 targets: npt.NDArray[np.float64], window_s: float,
                 out: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    # Rows exactly on a window edge count as inside; EDGE_TOLERANCE_S keeps that true when the edge is
    # computed with rounding error (0.13 + 0.15 != 0.28 in binary floating point).
    half = 0.5 * window_s + EDGE_TOLERANCE_S
    start = np.searchsorted(times, targets - half, side="left")
    stop = np.searchsorted(times, targets + half, side="right")
    weights = valid.astype(np.float64)
    # Prefix sums over valid rows make every window O(1); invalid rows contribute nothing.
    csum = np.concatenate([np.zeros((1, flat.shape[1])), np.cumsum(flat * weights[:, None], axis=0)])
    ccount = np.concatenate([[0.0], np.cumsum(weights)])
    count = ccount[stop] - ccount[start]
    mask: npt.NDArray[np.bool_] = count > 0
    total = csum[stop] - csum[start]
    out[:] = total / np.where(mask, count, 1.0)[:, None]
    return mask
