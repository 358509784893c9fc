"""The example views of the three Team RAS heads as index arrays into packed rows, and the way back to
frames.

Every view is a :class:`Windows`: per example, the first row and the number of real rows in some packed
row space, padded to a fixed ``size`` (padding repeats the last real row and is masked). Batches are
gathered from the packed arrays with :meth:`Windows.gather_rows`; there is no per-example I/O or copy.

* :func:`frame_windows` (``ras-face``): ``window`` clock frames every ``hop`` (RAS 400/150); the last window
  is aligned to the video's end; a shorter video gives one padded window.
* :func:`segment_windows` (``ras-behaviour``): runs of ``window`` segments every ``stride`` over each
  video's segments sorted by time (RAS 16/8; the last run may be shorter, padded); segment targets are the
  mean of the valid frame labels inside each segment (:func:`segment_targets`).
* :func:`audio_windows` (``ras-audio``): ``window_s`` windows every ``hop_s`` over the rows of a frame-level
  audio modality (``wavlm-frames``: 4 s / 2 s = 200 rows of 20 ms), the last partial window kept when at
  least ``min_window_s`` long; ``n_bins`` one-second target bins per window ("s2s"): bin ``i`` covers
  ``[t0+i, t0+i+1) ∩ [t0, t1)``, i.e. clock frames ``[floor(a·fps), ceil(b·fps))``, and holds the mean of
  their valid labels (masked when there is none).

Back to frames: :func:`overlap_mean_rows` (window outputs averaged per frame, plain mean),
:func:`interpolate_windows` (RAS's audio evaluation: a window's ``n_bins`` outputs linearly interpolated,
``align_corners=True``, over its frames ``[round(t0·fps), round(t1·fps))``), :func:`fill_nearest` (frames
no window reached take the nearest predicted frame) and :func:`smooth` (moving average, replicate padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from affectcache.store.align import interval_mean

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.packed import PackedModality
    from affectcache.trainers.data.clock import FrameClock


@dataclass(frozen=True, kw_only=True, eq=False)
class Windows:
    """Fixed-size examples over a packed row space (see the module docstring)."""

    video: npt.NDArray[np.int64]
    """(n,) position of each example's video (on the clock)."""
    start: npt.NDArray[np.int64]
    """(n,) first row of each example."""
    length: npt.NDArray[np.int64]
    """(n,) real rows of each example (the rest is padding)."""
    size: int
    """Rows per example, padding included."""

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def gather_rows(self, which: npt.NDArray[np.int64] | None = None,
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """``(rows, valid)``, each (len(which), size): the row of every step and whether it is real.

        Padding repeats the example's last real row (RAS's padding) so every gathered value is a real one.
        """
        sel = np.arange(len(self)) if which is None else np.asarray(which, dtype=np.int64)
        steps = np.arange(self.size, dtype=np.int64)
        length = self.length[sel, None]
        valid = steps[None, :] < length
        rows = self.start[sel, None] + np.minimum(steps[None, :], np.maximum(length - 1, 0))
        return rows, valid

    def subset(self, keep: npt.NDArray[np.bool_]) -> Windows:
        """The examples where ``keep`` is true."""
        return Windows(video=self.video[keep], start=self.start[keep], length=self.length[keep],
                       size=self.size)


def _window_starts(n: int, window: int, hop: int, *, end_aligned: bool) -> list[tuple[int, int]]:
    if n <= 0:
        return []
    if n <= window:
        return [(0, n)]
    if end_aligned:
        starts = list(range(0, n - window + 1, hop))
        if starts[-1] + window < n:
            starts.append(n - window)
        return [(s, window) for s in starts]
    out, start = [], 0
    while True:
        end = min(start + window, n)
        out.append((start, end - start))
        if end >= n:
            return out
        start += hop


def frame_windows(clock: FrameClock, *, window: int, hop: int,
                  videos: Sequence[int] | None = None) -> Windows:
    """RAS's frame windows over the clock rows of ``videos`` (positions; default all)."""
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got {window} and {hop}")
    return _windows(clock.offsets, range(len(clock)) if videos is None else videos, window, hop,
                    end_aligned=True)


def _windows(offsets: npt.NDArray[np.int64], videos: Sequence[int], window: int, hop: int, *,
             end_aligned: bool) -> Windows:
    """The windows of each video's row range ``offsets[i]:offsets[i + 1]``, in packed row positions."""
    vids, starts, lengths = [], [], []
    for i in videos:
        base, n = int(offsets[i]), int(offsets[i + 1] - offsets[i])
        for s, length in _window_starts(n, window, hop, end_aligned=end_aligned):
            vids.append(i)
            starts.append(base + s)
            lengths.append(length)
    return Windows(video=np.asarray(vids, np.int64), start=np.asarray(starts, np.int64),
                   length=np.asarray(lengths, np.int64), size=window)


@dataclass(frozen=True, kw_only=True, eq=False)
class Segments:
    """The segments of a segment modality per clock video, sorted by time (a row space for windows)."""

    rows: npt.NDArray[np.int64]
    """(n,) packed row of each sorted segment."""
    offsets: npt.NDArray[np.int64]
    """(n_videos + 1,) per clock video, its range in ``rows``."""
    start_s: npt.NDArray[np.float64]
    """(n,) segment starts."""
    end_s: npt.NDArray[np.float64]
    """(n,) segment ends."""
    valid: npt.NDArray[np.bool_]
    """(n,) segment validity (the modality's mask)."""


def sort_segments(packed: PackedModality, clock: FrameClock) -> Segments:
    """Each clock video's segments of ``packed``, sorted by (start, end); videos it lacks get none."""
    if "start_s" not in packed.row_arrays:
        raise ValueError(f"{packed.modality} has {packed.kind} rows; segment views need start_s/end_s rows")
    starts, ends = packed.row_arrays["start_s"], packed.row_arrays["end_s"]
    rows, lengths = [], []
    for vid in clock.video_ids:
        if vid in packed:
            sl = packed.rows(vid)
            order = np.lexsort((ends[sl], starts[sl]))
            rows.append(sl.start + order)
        else:
            rows.append(np.empty(0, np.int64))
        lengths.append(rows[-1].shape[0])
    flat = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return Segments(rows=flat, offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    start_s=starts[flat], end_s=ends[flat], valid=packed.mask[flat])


def segment_windows(segments: Segments, *, window: int, stride: int, videos: Sequence[int]) -> Windows:
    """RAS's runs of ``window`` segments every ``stride`` (last run shorter) over clock videos ``videos``."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    return _windows(segments.offsets, videos, window, stride, end_aligned=False)


def segment_targets(segments: Segments, clock: FrameClock,
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Per sorted segment: the mean of the valid clock labels with ``start_s <= time < end_s``."""
    n_labels = clock.targets.shape[1]
    out = np.zeros((segments.rows.shape[0], n_labels), dtype=np.float32)
    mask = np.zeros(segments.rows.shape[0], dtype=bool)
    for i in range(len(clock)):
        seg = slice(int(segments.offsets[i]), int(segments.offsets[i + 1]))
        if seg.stop == seg.start:
            continue
        rows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        t, ok = clock.time_s[rows], clock.target_mask[rows]
        lo = np.searchsorted(t, segments.start_s[seg], side="left")
        hi = np.searchsorted(t, segments.end_s[seg], side="left")
        csum = np.concatenate([np.zeros((1, n_labels)), np.cumsum(clock.targets[rows] * ok[:, None], axis=0)])
        ccount = np.concatenate([[0], np.cumsum(ok)])
        count = ccount[hi] - ccount[lo]
        mask[seg] = count > 0
        out[seg] = (csum[hi] - csum[lo]) / np.maximum(count, 1)[:, None]
    return out, mask


def expand_segments(segments: Segments, values: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_],
                    clock: FrameClock) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per-segment outputs onto the clock: interval assignment with overlap averaging (RAS §1.6 (1))."""
    width = values.shape[1]
    out = np.zeros((clock.n_rows, width), dtype=np.float64)
    covered = np.zeros(clock.n_rows, dtype=bool)
    for i in range(len(clock)):
        seg = slice(int(segments.offsets[i]), int(segments.offsets[i + 1]))
        rows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        if seg.stop == seg.start:
            continue
        out[rows], covered[rows] = interval_mean(segments.start_s[seg], segments.end_s[seg], values[seg],
                                                 valid[seg], clock.time_s[rows])
    return out, covered


@dataclass(frozen=True, kw_only=True, eq=False)
class AudioWindows:
    """Audio windows over a frame-level audio modality, with their one-second target bins."""

    windows: Windows
    """Rows of the audio modality per window (``size`` = rows per ``window_s``)."""
    t0: npt.NDArray[np.float64]
    """(n,) window start, seconds."""
    t1: npt.NDArray[np.float64]
    """(n,) window end (``min(t0 + window_s, duration)``)."""
    bin_targets: npt.NDArray[np.float32]
    """(n, n_bins, n_labels) bin targets (0 where masked)."""
    bin_mask: npt.NDArray[np.bool_]
    """(n, n_bins) whether a bin holds a valid label."""
    active: npt.NDArray[np.float64]
    """(n,) share of the window's real rows that the audio modality marks valid (not silent)."""

    def __len__(self) -> int:
        return len(self.windows)

    def subset(self, keep: npt.NDArray[np.bool_]) -> AudioWindows:
        return AudioWindows(windows=self.windows.subset(keep), t0=self.t0[keep], t1=self.t1[keep],
                            bin_targets=self.bin_targets[keep], bin_mask=self.bin_mask[keep],
                            active=self.active[keep])


def row_stride_s(packed: PackedModality) -> float:
    """Median spacing of a frame-level modality's rows (``wavlm-frames``: 0.02 s)."""
    t, offsets = packed.row_arrays["time_s"], packed.offsets
    diffs = [np.diff(t[offsets[i]:offsets[i + 1]]) for i in range(len(packed))]
    flat = np.concatenate(diffs) if diffs else np.empty(0)
    if flat.size == 0:
        raise ValueError(f"{packed.modality}: too few rows to tell its row spacing")
    return float(np.median(flat))


def audio_windows(audio: PackedModality, clock: FrameClock, *, window_s: float, hop_s: float,
                  min_window_s: float, n_bins: int, videos: Sequence[int]) -> AudioWindows:
    """RAS's audio windows and bin targets (see the module docstring) for clock videos ``videos``."""
    if audio.kind != "frame":
        raise ValueError(f"{audio.modality} has {audio.kind} rows; audio windows need frame-level rows")
    stride = row_stride_s(audio)
    size = round(window_s / stride)
    bin_s = window_s / n_bins
    times = audio.row_arrays["time_s"]
    vids, starts, lengths, t0s, t1s, actives = [], [], [], [], [], []
    bins, bin_masks = [], []
    n_labels = clock.targets.shape[1]
    eps = 1e-6 * stride
    for i in videos:
        vid = clock.video_ids[i]
        if vid not in audio:
            continue
        sl = audio.rows(vid)
        t = times[sl]
        if t.size == 0:
            continue
        duration = float(t[-1] + stride)
        crows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        frame, ok, target = clock.frame[crows], clock.target_mask[crows], clock.targets[crows]
        fps = float(clock.fps[i])
        t0 = 0.0
        while t0 < duration - eps:
            t1 = min(t0 + window_s, duration)
            if t1 - t0 >= min_window_s - eps or t0 == 0.0:
                lo = int(np.searchsorted(t, t0 - eps, side="left"))
                hi = min(int(np.searchsorted(t, t0 + window_s - eps, side="left")), lo + size)
                vids.append(i)
                starts.append(sl.start + lo)
                lengths.append(hi - lo)
                t0s.append(t0)
                t1s.append(t1)
                actives.append(float(audio.mask[sl.start + lo:sl.start + hi].mean()) if hi > lo else 0.0)
                vals = np.zeros((n_bins, n_labels), dtype=np.float32)
                have = np.zeros(n_bins, dtype=bool)
                for b in range(n_bins):
                    a, e = t0 + b * bin_s, min(t0 + (b + 1) * bin_s, t1)
                    if e <= a or not math.isfinite(fps):
                        continue
                    f_lo, f_hi = math.floor(a * fps), math.ceil(e * fps)
                    sel = (frame >= f_lo) & (frame < f_hi) & ok
                    if sel.any():
                        vals[b] = target[sel].mean(axis=0)
                        have[b] = True
                bins.append(vals)
                bin_masks.append(have)
            if t1 >= duration - eps:
                break
            t0 += hop_s
    windows = Windows(video=np.asarray(vids, np.int64), start=np.asarray(starts, np.int64),
                      length=np.asarray(lengths, np.int64), size=size)
    return AudioWindows(windows=windows, t0=np.asarray(t0s, np.float64), t1=np.asarray(t1s, np.float64),
                        bin_targets=(np.stack(bins) if bins else np.zeros((0, n_bins, n_labels), np.float32)),
                        bin_mask=(np.stack(bin_masks) if bin_masks else np.zeros((0, n_bins), bool)),
                        active=np.asarray(actives, np.float64))


# ---- back to frames -----------------------------------------------------------------------------------
def overlap_mean_rows(n_rows: int, rows: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_],
                      values: npt.NDArray[np.floating],
                      ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Average ``values`` (n, size, d) over every (row, step) that lands on the same row (plain mean)."""
    flat_rows = rows[valid]
    flat_vals = np.asarray(values, dtype=np.float64)[valid]
    count = np.bincount(flat_rows, minlength=n_rows).astype(np.float64)
    out = np.zeros((n_rows, values.shape[-1]), dtype=np.float64)
    for k in range(out.shape[1]):
        out[:, k] = np.bincount(flat_rows, weights=flat_vals[:, k], minlength=n_rows)
    covered = count > 0
    out[covered] /= count[covered, None]
    return out, covered


def interpolate_windows(clock: FrameClock, videos: npt.NDArray[np.int64], t0: npt.NDArray[np.float64],
                        t1: npt.NDArray[np.float64], values: npt.NDArray[np.floating],
                        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Window outputs (n, n_bins, d) onto clock frames: linear, ``align_corners=True``, then overlap mean."""
    n_bins, width = values.shape[1], values.shape[2]
    total = np.zeros((clock.n_rows, width), dtype=np.float64)
    count = np.zeros(clock.n_rows, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    for w in range(videos.shape[0]):
        i = int(videos[w])
        fps = float(clock.fps[i])
        base, n = int(clock.offsets[i]), int(clock.offsets[i + 1] - clock.offsets[i])
        f_lo, f_hi = round(t0[w] * fps), min(round(t1[w] * fps), n)
        length = f_hi - f_lo
        if length <= 0 or f_lo >= n:
            continue
        pos = np.arange(length) * ((n_bins - 1) / (length - 1)) if length > 1 else np.zeros(1)
        lo = np.clip(np.floor(pos).astype(np.int64), 0, n_bins - 1)
        hi = np.clip(lo + 1, 0, n_bins - 1)
        frac = (pos - lo)[:, None]
        total[base + f_lo:base + f_hi] += vals[w, lo] * (1 - frac) + vals[w, hi] * frac
        count[base + f_lo:base + f_hi] += 1
    covered = count > 0
    total[covered] /= count[covered, None]
    return total, covered


def fill_nearest(clock: FrameClock, values: npt.NDArray[np.float64], covered: npt.NDArray[np.bool_],
                 ) -> npt.NDArray[np.float64]:
    """Frames without an output take the nearest covered frame of their video (unchanged if none is)."""
    out = values.copy()
    for i in range(len(clock)):
        rows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        have = np.flatnonzero(covered[rows])
        if have.size == 0 or have.size == rows.stop - rows.start:
            continue
        t = clock.time_s[rows]
        right = np.clip(np.searchsorted(t[have], t, side="left"), 0, have.size - 1)
        left = np.clip(right - 1, 0, have.size - 1)
        pick = np.where(np.abs(t - t[have][left]) <= np.abs(t[have][right] - t), left, right)
        out[rows] = values[rows][have[pick]]
    return out


def smooth(clock: FrameClock, values: npt.NDArray[np.float64], kernels: Sequence[int],
           ) -> npt.NDArray[np.float64]:
    """Moving average per video and column with replicate padding (RAS: 7 for valence, 13 for arousal).

    ``kernels[k]`` is column ``k``'s window (odd; 1 or 0 = unchanged).
    """
    out = values.copy()
    for k, size in enumerate(kernels):
        if size <= 1:
            continue
        if size % 2 == 0:
            raise ValueError(f"smoothing kernels must be odd, got {size}")
        half = size // 2
        for i in range(len(clock)):
            rows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
            col = values[rows, k]
            if col.size == 0:
                continue
            padded = np.concatenate([np.full(half, col[0]), col, np.full(half, col[-1])])
            csum = np.concatenate([[0.0], np.cumsum(padded)])
            out[rows, k] = (csum[size:] - csum[:-size]) / size
    return out
