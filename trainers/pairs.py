"""Preference pairs between consecutive windows (LaScA §3.3, §4.2).

Window labels are the mean of a frame-level label track inside each window (rows with a false ``mask``
excluded; a window without a valid frame has no label). Consecutive windows ``t, t+1`` of one video form a
pair when both have a label and the relative change passes the margin::

    |a(t+1) - a(t)| / max(|a(t)|, eps) > tau

The pair is kept in both orders with complementary labels: ``(t, t+1)`` labelled ``a(t+1) > a(t)`` and
``(t+1, t)`` labelled the opposite, so the classes are balanced. The model input is then the difference
``z[second] - z[first]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from affectcache.extractors.core.records import FeatureArray


def window_labels(track: FeatureArray, start_s: npt.ArrayLike, end_s: npt.ArrayLike
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Mean label of the valid frames in each ``[start, end)`` window, and whether it had any.

    Windows without a valid frame get 0 and ``False``.
    """
    if track.time_s is None:
        raise ValueError(f"{track.video_id}: label tracks must be frame-level")
    values = track.values.astype(np.float64).reshape(track.n_rows)
    ok = np.ones(track.n_rows, bool) if track.mask is None else track.mask
    starts, ends = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    means = np.zeros(len(starts))
    valid = np.zeros(len(starts), bool)
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        inside = ok & (track.time_s >= a) & (track.time_s < b)
        if inside.any():
            means[i] = values[inside].mean()
            valid[i] = True
    return means, valid


@dataclass(frozen=True, kw_only=True)
class Pairs:
    """Index pairs ``(first, second)`` into one video's windows and their labels."""

    first: npt.NDArray[np.int64]
    """Index of the first window of each pair."""
    second: npt.NDArray[np.int64]
    """Index of the second window."""
    label: npt.NDArray[np.int64]
    """1 when affect is higher in ``second`` than in ``first``."""

    def __len__(self) -> int:
        return int(self.first.shape[0])


def preference_pairs(affect: npt.ArrayLike, valid: npt.ArrayLike | None = None, *, threshold: float,
                     epsilon: float = 1e-3) -> Pairs:
    """Pairs of consecutive windows whose relative affect change exceeds ``threshold``, both orders.

    Args:
        affect: Window labels ``a(t)`` of one video, in time order.
        valid: Windows that have a label (default: all).
        threshold: The margin tau (LaScA: 0.10 or 0.20).
        epsilon: Floor of the denominator, so changes away from ``a(t) = 0`` are not divided by zero.

    Returns:
        The pairs: for each kept ``t``, ``(t, t+1)`` then ``(t+1, t)``.
    """
    a = np.asarray(affect, dtype=np.float64)
    ok = np.ones(a.shape[0], bool) if valid is None else np.asarray(valid, bool)
    if threshold < 0 or epsilon <= 0:
        raise ValueError(f"need threshold >= 0 and epsilon > 0, got {threshold}, {epsilon}")
    t = np.arange(max(a.shape[0] - 1, 0))
    change = np.abs(a[t + 1] - a[t]) / np.maximum(np.abs(a[t]), epsilon)
    keep = t[ok[t] & ok[t + 1] & (change > threshold)]
    rises = (a[keep + 1] > a[keep]).astype(np.int64)
    first = np.stack([keep, keep + 1], axis=1).ravel()
    second = np.stack([keep + 1, keep], axis=1).ravel()
    label = np.stack([rises, 1 - rises], axis=1).ravel()
    return Pairs(first=first.astype(np.int64), second=second.astype(np.int64), label=label)
