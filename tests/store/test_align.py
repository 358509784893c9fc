"""align_track: nearest / linear / window-mean against hand-computed values and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affectcache.extractors.core.records import FeatureArray
from affectcache.store.align import EDGE_TOLERANCE_S, align_feature_array, align_track

T = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
V = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def test_nearest_on_the_same_clock_is_the_identity_and_keeps_the_mask() -> None:
    valid = np.array([True, True, False, True, True])
    out, mask = align_track(T, V, valid, T, method="nearest")
    assert mask.tolist() == valid.tolist()
    assert out.tolist() == [1.0, 2.0, 0.0, 4.0, 5.0]


def test_nearest_masks_targets_beyond_half_a_step_from_the_track() -> None:
    out, mask = align_track(T, V, None, [-0.2, -0.04, 0.06, 0.44, 0.6], method="nearest")
    assert mask.tolist() == [False, True, True, True, False]
    assert out.tolist() == [0.0, 1.0, 2.0, 5.0, 0.0]
    _, mask = align_track(T, V, None, [0.6], method="nearest", max_distance_s=0.25)
    assert mask.tolist() == [True]


def test_linear_interpolates_between_valid_neighbours_only() -> None:
    valid = np.array([True, True, False, True, True])
    out, mask = align_track(T, V, valid, [0.05, 0.15, 0.35, 0.4, 0.45, -0.01], method="linear")
    assert mask.tolist() == [True, False, True, True, False, False]
    np.testing.assert_allclose(out, [1.5, 0.0, 4.5, 5.0, 0.0, 0.0])


def test_window_mean_averages_valid_rows_in_the_window() -> None:
    valid = np.array([True, True, False, True, True])
    out, mask = align_track(T, V, valid, [0.2, 0.05, 1.0], method="window-mean", window_s=0.25)
    assert mask.tolist() == [True, True, False]
    np.testing.assert_allclose(out, [(2.0 + 4.0) / 2, 1.5, 0.0])


def test_multichannel_values_keep_their_trailing_shape() -> None:
    values = np.stack([V, -V], axis=1)
    out, mask = align_track(T, values, None, [0.1, 0.25], method="linear")
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, [[2.0, -2.0], [3.5, -3.5]])
    assert mask.all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "cubic"}, "unknown alignment method"),
    ({"method": "window-mean"}, "needs window_s"),
    ({"method": "nearest", "window_s": 0.2}, "only used by method 'window-mean'"),
    ({"method": "linear", "max_distance_s": 0.2}, "only used by method 'nearest'"),
])
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        align_track(T, V, None, T, **kwargs)  # type: ignore[arg-type]


def test_unsorted_track_times_are_refused() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        align_track([0.0, 0.2, 0.1], [1, 2, 3], None, [0.1], method="nearest")


def test_align_feature_array_uses_the_stored_times_and_mask() -> None:
    feats = FeatureArray(video_id="v", kind="frame", values=V.astype(np.float32), frame=np.arange(5),
                         time_s=T * 2, mask=np.array([True, False, True, True, True]))
    out, mask = align_feature_array(feats, [0.2, 0.4], method="nearest")
    assert mask.tolist() == [False, True]
    assert out.tolist() == [0.0, 3.0]


# ---- property tests against a brute-force reference ------------------------------------------------
def _reference(times: np.ndarray, values: np.ndarray, valid: np.ndarray, target: float, method: str,
               window_s: float) -> tuple[float, bool]:
    if method == "nearest":
        dist = np.abs(times - target)
        best = int(np.flatnonzero(dist == dist.min())[0])  # ties: the earlier row
        limit = 0.5 * float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        ok = bool(valid[best]) and dist[best] <= limit
        return (float(values[best]) if ok else 0.0), ok
    if method == "linear":
        if target < times[0] or target > times[-1]:
            return 0.0, False
        lo = int(np.flatnonzero(times <= target)[-1])
        if times[lo] == target:
            return (float(values[lo]), True) if valid[lo] else (0.0, False)
        hi = lo + 1
        if not (valid[lo] and valid[hi]):
            return 0.0, False
        w = (target - times[lo]) / (times[hi] - times[lo])
        return float(values[lo] * (1 - w) + values[hi] * w), True
    inside = (np.abs(times - target) <= window_s / 2 + EDGE_TOLERANCE_S) & valid
    return (float(values[inside].mean()), True) if inside.any() else (0.0, False)


@st.composite
def _tracks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    steps = draw(st.lists(st.integers(1, 5), min_size=n - 1, max_size=n - 1))
    times = np.concatenate([[0.0], np.cumsum(steps)]) * 0.04
    values = np.array(draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n)), dtype=float) / 10
    valid = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    targets = np.array(draw(st.lists(st.integers(-10, 80), min_size=1, max_size=10)), dtype=float) * 0.013
    return times, values, valid, targets


@settings(max_examples=150, deadline=None)
@given(track=_tracks(), method=st.sampled_from(["nearest", "linear", "window-mean"]),
       window=st.sampled_from([0.05, 0.13, 0.3]))
def test_alignment_matches_a_brute_force_reference(
        track: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], method: str, window: float) -> None:
    times, values, valid, targets = track
    out, mask = align_track(times, values, valid, targets, method=method,  # type: ignore[arg-type]
                            window_s=window if method == "window-mean" else None)
    for k, target in enumerate(targets):
        want, ok = _reference(times, values, valid, float(target), method, window)
        assert bool(mask[k]) == ok, (method, target)
        assert out[k] == pytest.approx(want, abs=1e-9), (method, target)


def test_window_edges_are_inside_despite_rounding() -> None:
    # 0.13 + 0.15 rounds above 0.28 and |0.28 - 0.13| rounds above 0.15: the row at 0.28 is on the edge.
    out, mask = align_track([0.0, 0.04, 0.08, 0.28], [0.0, 0.0, 0.0, 0.1], [False, False, True, True], [0.13],
                            method="window-mean", window_s=0.3)
    assert mask.tolist() == [True]
    assert out[0] == pytest.approx(0.05)


def _segments() -> FeatureArray:
    # Windows of 2 s every 1 s (overlapping); the third is masked.
    starts = np.array([0.0, 1.0, 2.0, 3.0])
    values = np.array([[1.0], [2.0], [4.0], [8.0]], np.float32)
    return FeatureArray(video_id="v", kind="segment", values=values,
                        start_s=starts, end_s=starts + 2.0, mask=np.array([True, True, False, True]))


def test_segment_entries_align_by_overlap_or_window_centres() -> None:
    seg = _segments()
    targets = [0.5, 1.5, 2.5, 3.5, 4.9, 5.0]
    out, mask = align_feature_array(seg, targets, method="overlap")
    # 1.5 lies in windows 0 and 1 (mean 1.5); 2.5 in 1 and the masked 2 (so 2.0); 5.0 is past every end.
    assert mask.tolist() == [True, True, True, True, True, False]
    assert out[:, 0].tolist() == [1.0, 1.5, 2.0, 8.0, 8.0, 0.0]
    # Window centres are 1, 2, 3, 4: nearest centre (within half the 1 s spacing) and linear between them.
    out, mask = align_feature_array(seg, [1.1, 2.9, 3.6, 9.0], method="nearest")
    assert mask.tolist() == [True, False, True, False]  # 2.9 -> the masked window at 3.0
    assert out[:, 0].tolist() == [1.0, 0.0, 8.0, 0.0]
    out, mask = align_feature_array(seg, [1.5], method="linear")
    assert mask.tolist() == [True]
    assert out[0, 0] == pytest.approx(1.5)


def test_segment_centres_are_ordered_when_lengths_differ() -> None:
    seg = FeatureArray(video_id="v", kind="segment", values=np.array([10.0, 20.0], np.float32),
                       start_s=np.array([0.0, 1.0]), end_s=np.array([10.0, 2.0]))  # centres 5.0, 1.5
    out, mask = align_feature_array(seg, [1.4, 5.2], method="nearest", max_distance_s=1.0)
    assert mask.tolist() == [True, True]
    assert out.tolist() == [20.0, 10.0]


def test_align_feature_array_refusals() -> None:
    frames = FeatureArray(video_id="v", kind="frame", values=V.astype(np.float32), frame=np.arange(5),
                          time_s=T)
    with pytest.raises(ValueError, match="'overlap' is for segment entries"):
        align_feature_array(frames, [0.1], method="overlap")
    text = FeatureArray(video_id="v", kind="text", values=np.array(["a"]), start_s=[0.0], end_s=[1.0])
    with pytest.raises(ValueError, match="text rows have no numeric value"):
        align_feature_array(text, [0.1], method="nearest")
    with pytest.raises(ValueError, match="takes neither"):
        align_feature_array(_segments(), [0.1], method="overlap", window_s=1.0)
