"""The VA data layer: the frame clock, inputs by index, the three views and the way back to frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.store.align import interval_mean, nearest_rows
from affectcache.store.errors import StoreError
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.data.clock import load_clock
from affectcache.trainers.data.inputs import align_frame_input, load_input
from affectcache.trainers.data.views import (
    _window_starts,
    audio_windows,
    fill_nearest,
    frame_windows,
    interpolate_windows,
    overlap_mean_rows,
    segment_targets,
    segment_windows,
    smooth,
    sort_segments,
)
from tests.trainers.va_store import FPS

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def loaded(va_store_template: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    store, manifest = va_store_template
    fs = FeatureStore(store, read_only=True)
    man = load_manifest(manifest)
    return fs, man, load_clock(fs, ("valence", "arousal"), man.ids(), manifest=man)


def test_clock_stacks_label_tracks_and_masks_invalid_frames(loaded) -> None:  # type: ignore[no-untyped-def]
    fs, _, clock = loaded
    assert clock.video_ids == tuple(f"vid{i:02d}" for i in range(8))
    assert clock.n_rows == 8 * 400
    rows = clock.rows("vid03")
    v = fs.read("labels/valence", "vid03")
    np.testing.assert_allclose(clock.targets[rows, 0][v.mask], v.values[v.mask])
    assert not clock.target_mask[rows][40:45].any()  # the -5 frames
    assert clock.target_mask[rows].sum() == 395
    np.testing.assert_allclose(clock.fps, FPS)
    assert (clock.targets[~clock.target_mask] == 0).all()  # no -5 leaks into sums


def test_unlabelled_video_gets_a_clock_from_the_manifest(loaded) -> None:  # type: ignore[no-untyped-def]
    fs, man, _ = loaded
    from affectcache.extractors.core.records import MediaItem
    from affectcache.store.errors import StoreError
    from affectcache.store.manifest import Manifest

    extra = MediaItem(video_id="nolabels", path="/x.mp4", split="test",
                      labels={"fps": 30.0, "n_label_rows": 90})
    manifest = Manifest(items=(*man.items, extra))
    clock = load_clock(fs, ("valence", "arousal"), ["vid00", "nolabels"], manifest=manifest)
    rows = clock.rows("nolabels")
    assert rows.stop - rows.start == 90
    assert clock.time_s[rows][-1] == pytest.approx(89 / 30)
    assert not clock.target_mask[rows].any()
    assert clock.labelled.tolist() == [True, False]
    with pytest.raises(StoreError, match="no labels/valence entry and no fps"):
        load_clock(fs, ("valence",), ["nolabels"], manifest=None)


def test_frame_input_by_nearest_valid_index(loaded) -> None:  # type: ignore[no-untyped-def]
    fs, _, clock = loaded
    face = load_input(fs, "face-emb", list(clock.video_ids), None)
    aligned = align_frame_input(face, clock, max_fill_s=None)
    packed = face.packed
    for vid in ("vid00", "vid06"):
        rows, src = clock.rows(vid), packed.rows(vid)
        t_src, ok = packed.row_arrays["time_s"][src], packed.mask[src]
        for j in (0, 7, 133, 399):  # brute force: nearest valid source row (earlier one on ties)
            t = clock.time_s[rows][j]
            cand = np.flatnonzero(ok)
            best = cand[np.argmin(np.abs(t_src[cand] - t) + 1e-12 * cand)]
            assert aligned.index[rows][j] == src.start + best
        assert aligned.valid[rows].all()
        # 10 fps rows on a 25 fps clock: a frame has its own row only at multiples of 0.1 s.
        own = ~aligned.filled[rows]
        assert 100 < own.sum() <= 160  # at most one clock frame owns each 10 fps row
        offset = packed.row_arrays["time_s"][aligned.index[rows]] - clock.time_s[rows]
        assert (np.abs(offset[own]) <= 0.02 + 1e-9).all()
        assert (np.abs(offset[~own]) >= 0.02 - 1e-9).all()
    tight = align_frame_input(face, clock, max_fill_s=0.01)
    assert tight.valid.sum() < aligned.valid.sum()
    assert not (tight.valid & tight.filled & (np.abs(
        face.packed.row_arrays["time_s"][tight.index] - clock.time_s) > 0.01 + 1e-9)).any()


def test_nearest_rows_and_interval_mean_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 10, 40))
    valid = rng.random(40) > 0.3
    targets = rng.uniform(-1, 11, 200)
    idx, ok = nearest_rows(times, valid, targets, valid_only=True, max_distance_s=0.5)
    cand = np.flatnonzero(valid)
    for k, t in enumerate(targets):
        best = cand[np.argmin(np.abs(times[cand] - t))]
        assert abs(times[idx[k]] - t) == pytest.approx(abs(times[best] - t))
        assert ok[k] == (abs(times[best] - t) <= 0.5)
    starts = rng.uniform(0, 9, 25)
    ends = starts + rng.uniform(0.1, 3, 25)
    vals = rng.normal(size=(25, 3))
    seg_ok = rng.random(25) > 0.2
    out, covered = interval_mean(starts, ends, vals, seg_ok, targets)
    for k, t in enumerate(targets):
        inside = (starts <= t) & (t < ends) & seg_ok
        assert covered[k] == inside.any()
        if inside.any():
            np.testing.assert_allclose(out[k], vals[inside].mean(axis=0), atol=1e-9)


def test_window_rules_follow_ras() -> None:
    # Frame windows: hop starts, last aligned to the end; short videos give one padded window.
    assert _window_starts(1000, 400, 150, end_aligned=True) == [(0, 400), (150, 400), (300, 400), (450, 400),
                                                                 (600, 400)]
    assert _window_starts(900, 400, 150, end_aligned=True)[-1] == (500, 400)
    assert _window_starts(120, 400, 150, end_aligned=True) == [(0, 120)]
    # Segment runs: stride starts, the last run stops at the end (shorter).
    assert _window_starts(20, 16, 8, end_aligned=False) == [(0, 16), (8, 12)]
    assert _window_starts(16, 16, 8, end_aligned=False) == [(0, 16)]


def test_frame_windows_gather_pads_by_repeating_the_last_frame(loaded) -> None:  # type: ignore[no-untyped-def]
    _, _, clock = loaded
    windows = frame_windows(clock.subset(["vid01"]), window=500, hop=150)
    rows, valid = windows.gather_rows()
    assert rows.shape == (1, 500)
    assert valid[0, :400].all()
    assert not valid[0, 400:].any()
    assert (rows[0, 400:] == 399).all()
    windows = frame_windows(clock, window=100, hop=50)
    assert len(windows) == 8 * 7


def test_segment_view_targets_and_runs(loaded) -> None:  # type: ignore[no-untyped-def]
    fs, _, clock = loaded
    packed = fs.load("beh-emb")
    segments = sort_segments(packed, clock)
    targets, mask = segment_targets(segments, clock)
    i = clock.index("vid02")
    seg = slice(int(segments.offsets[i]), int(segments.offsets[i + 1]))
    rows = clock.rows("vid02")
    s, e = segments.start_s[seg][1], segments.end_s[seg][1]  # [2 s, 6 s)
    inside = (clock.time_s[rows] >= s) & (clock.time_s[rows] < e) & clock.target_mask[rows]
    np.testing.assert_allclose(targets[seg][1], clock.targets[rows][inside].mean(axis=0), rtol=1e-5)
    assert mask[seg].all()
    runs = segment_windows(segments, window=4, stride=2, videos=[i])
    assert [(int(a) - seg.start, int(n)) for a, n in zip(runs.start, runs.length, strict=True)] == \
        [(0, 4), (2, 4), (4, 3)]


def test_audio_windows_and_bins(loaded) -> None:  # type: ignore[no-untyped-def]
    fs, _, clock = loaded
    audio = fs.load("audio-frames")
    i = clock.index("vid04")
    aw = audio_windows(audio, clock, window_s=4.0, hop_s=2.0, min_window_s=1.0, n_bins=4, videos=[i])
    # 16 s: windows start at 0, 2, ..., 12 (the one at 12 reaches the end).
    np.testing.assert_allclose(aw.t0, [0, 2, 4, 6, 8, 10, 12])
    assert aw.windows.size == 200
    assert (aw.windows.length == 200).all()
    rows = clock.rows("vid04")
    frame, ok, target = clock.frame[rows], clock.target_mask[rows], clock.targets[rows]
    for w in (0, 3):
        for b in range(4):
            a = aw.t0[w] + b
            sel = (frame >= np.floor(a * FPS)) & (frame < np.ceil((a + 1) * FPS)) & ok
            np.testing.assert_allclose(aw.bin_targets[w, b], target[sel].mean(axis=0), rtol=1e-5)
    # Rows of window 1 are the audio rows of [2 s, 6 s).
    r, _ = aw.windows.gather_rows(np.array([1]))
    t = audio.row_arrays["time_s"][r[0]]
    assert t[0] == pytest.approx(2.0)
    assert t[-1] == pytest.approx(5.98)


def test_overlap_mean_interpolation_fill_and_smoothing(loaded) -> None:  # type: ignore[no-untyped-def]
    from scipy.ndimage import uniform_filter1d

    _, _, clock = loaded
    rows = np.array([[0, 1, 2], [1, 2, 3]])
    valid = np.array([[True, True, True], [True, True, False]])
    values = np.array([[[1.0], [2.0], [3.0]], [[5.0], [6.0], [100.0]]])
    out, covered = overlap_mean_rows(5, rows, valid, values)
    np.testing.assert_allclose(out[:, 0], [1.0, 3.5, 4.5, 0.0, 0.0])
    assert covered.tolist() == [True, True, True, False, False]
    sub = clock.subset(["vid00"])
    # One window [0 s, 4 s) = frames 0..99: 4 bins interpolated with align_corners=True.
    vals = np.array([[[0.0], [3.0], [6.0], [9.0]]])
    preds, cov = interpolate_windows(sub, np.array([0]), np.array([0.0]), np.array([4.0]), vals)
    assert cov[:100].all()
    assert not cov[100:].any()
    np.testing.assert_allclose(preds[:100, 0], np.linspace(0, 9, 100))
    filled = fill_nearest(sub, preds, cov)
    np.testing.assert_allclose(filled[100:, 0], 9.0)
    noisy = np.random.default_rng(1).normal(size=(sub.n_rows, 2))
    smoothed = smooth(sub, noisy, (7, 13))
    np.testing.assert_allclose(smoothed[:, 0], uniform_filter1d(noisy[:, 0], 7, mode="nearest"), atol=1e-12)
    np.testing.assert_allclose(smoothed[:, 1], uniform_filter1d(noisy[:, 1], 13, mode="nearest"), atol=1e-12)


def test_input_skips_failed_items_with_one_warning_naming_the_cause(
        va_store: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    store, manifest = va_store
    fs = FeatureStore(store)
    ids = load_manifest(manifest).ids()
    fs.delete("audio-frames", [ids[0], ids[1]])
    fs.record_failures("audio-frames", {ids[0]: {"error": "MediaError", "message": "no audio stream",
                                                 "not_applicable": True}})
    with caplog.at_level("WARNING"):
        source = load_input(fs, "audio-frames", ids, None)
    assert ids[0] not in source.packed.video_ids
    assert ids[1] not in source.packed.video_ids
    assert len(source.packed.video_ids) == len(ids) - 2
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{ids[0]} (audio-frames does not apply: no audio stream)" in warning
    assert f"{ids[1]} (audio-frames not built)" in warning
    fs.delete("audio-frames", ids[2:])
    with pytest.raises(StoreError, match="audio-frames has none of the"):
        load_input(fs, "audio-frames", ids, None)
