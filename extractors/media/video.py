"""Video frames with PyAV: every frame of a clip, a rate, or K uniform frames, streamed in bounded memory.

One decoded frame is held at a time (or, inside a shared decoding, what the decode memo's budget allows),
so a two-hour video is never held in RAM. Times follow :mod:`affectcache.extractors.media.probe`'s
convention: seconds from the start of the file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.media.decode_memo import (
    DecodeMemo,
    Failed,
    FrameSampling,
    MediaNeeds,
    current_memo,
)
from affectcache.extractors.media.probe import (
    SEEK_SLACK_S,
    TRUNCATION_SLACK_S,
    check_bounds,
    check_clip_args,
    check_file,
    container_start_s,
    decode_stream,
    describe_clip,
    file_duration_s,
    frame_rate,
    media_source,
    open_container,
    require_video,
    seek,
    stream_end_s,
    truncation_error,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Sequence
    from pathlib import Path

    from av.container import InputContainer
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

__all__ = ["VideoFrame", "iter_frames"]

_SEEK_MARGINS_S: Final = (0.0, 5.0, 30.0, 120.0)
"""How far before ``start_s`` successive video seeks aim. Formats without an index (MPEG-TS) seek by
timestamp to any packet, and the decoder then drops frames up to the next keyframe, which may lie
after ``start_s``: each retry backs off further, and after the last one decoding starts at the top."""

_PACKET_TIME_MARGIN_S: Final = 2.0
"""How far past a clip's end the packet pre-scan keeps reading: packets come in decode order, so with
B-frames a frame shown before ``end_s`` can arrive a few packets after one shown after it."""


@dataclass(frozen=True, kw_only=True, eq=False)
class VideoFrame:
    """One decoded video frame, converted to RGB."""

    index: int
    """0-based index of the source frame in its stream, from its timestamp:
    ``round((time_s - first_frame_time_s) * fps)`` with ``fps`` the stream's average rate, bumped to
    ``previous + 1`` where variable-rate timestamps would repeat an index (so indices always increase)."""
    time_s: float
    """Presentation time in seconds from the start of the *file* (not of the clip)."""
    rgb: npt.NDArray[np.uint8]
    """``(height, width, 3)`` uint8 RGB pixels (C-contiguous; may share memory with the decoder's
    frame buffer, which stays alive as long as the array does)."""


# ------------------------------------------------------------------------------------------------ video


@dataclass(frozen=True)
class _Decoded:
    """A decoded (not yet converted) frame with its file time and source index."""

    index: int
    time_s: float
    interval_s: float
    """Nominal display duration (1 / average frame rate; 0 if unknown)."""
    frame: av.VideoFrame




def _video_source(
    src: str, start_s: float | None, end_s: float | None, *, attempt: int = 0,
) -> Generator[_Decoded, None, None]:
    """Every decoded frame with ``start_s <= time_s < end_s``, in presentation order.

    Seeks to the keyframe before ``start_s`` and skips forward. If the first frame decoded after the
    seek is later than ``start_s`` (or none is), the seek overshot (see ``_SEEK_MARGINS_S``) and
    decoding restarts from further back, rather than silently losing frames. At the natural end of
    the stream, checks that decoding got as far as the stream declares.
    """
    with open_container(src) as container:
        stream = require_video(container, src)
        # Frame + slice threading: decoding is the bottleneck, and frames come out in order anyway.
        stream.thread_type = "AUTO"
        check_bounds(src, start_s, end_s, file_duration_s(container, src))
        origin_s = container_start_s(container)
        fps = frame_rate(stream)
        stream_start: int | None = stream.start_time
        time_base = stream.time_base
        first_s: float | None = None
        if stream_start is not None and time_base is not None:
            first_s = float(stream_start * time_base) - origin_s
        interval_s = 1.0 / fps if fps else 0.0
        seek_s = None
        if start_s is not None and attempt < len(_SEEK_MARGINS_S):
            seek_s = start_s - _SEEK_MARGINS_S[attempt]
        seeked = seek_s is not None and seek_s > 0 and seek(container, stream, src, seek_s)
        if seeked and first_s is None:
            first_s = 0.0  # indices count from the file start, not from where the seek landed

        last_index = -1
        last_time_s: float | None = None
        last_end_s: float | None = None  # when the last decoded frame stops being shown
        checked_seek = not seeked
        for frame in decode_stream(container, stream, src, "video"):
            if frame.pts is not None and frame.time_base is not None:
                time_s = float(frame.pts * frame.time_base) - origin_s
            else:  # no timestamp (rare raw streams): assume constant rate after the previous frame
                time_s = 0.0 if last_time_s is None else last_time_s + (interval_s or 0.04)
            if not checked_seek:
                checked_seek = True
                assert start_s is not None  # seeked implies a start
                if time_s > start_s + SEEK_SLACK_S:
                    logger.debug("%s: seek to %.3f s gave a first frame at %.3f s, after the clip start; "
                                 "seeking further back", src, seek_s, time_s)
                    break
            if first_s is None:
                first_s = time_s
            index = max(round((time_s - first_s) * fps), last_index + 1) if fps else last_index + 1
            last_index, last_time_s = index, time_s
            # A frame's own duration, where the file gives one, covers a still final frame held
            # for seconds (slideshows, screen recordings), which is not truncation.
            shown_s = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
            last_end_s = time_s + max(shown_s, interval_s)
            if start_s is not None and time_s < start_s - SEEK_SLACK_S:
                continue
            if end_s is not None and time_s >= end_s - SEEK_SLACK_S:
                return
            yield _Decoded(index, time_s, interval_s, frame)
        else:
            if not checked_seek:  # not a single frame after the seek: it landed past the last keyframe
                logger.debug("%s: no frame decoded after seeking to %.3f s; seeking further back",
                             src, seek_s)
            else:
                _check_video_complete(container, stream, src, last_end_s, interval_s, end_s)
                return
    # Only reached when the seek overshot: the container is closed; retry from further back.
    yield from _video_source(src, start_s, end_s, attempt=attempt + 1)


def _check_video_complete(
    container: InputContainer, stream: VideoStream, src: str, reached: float | None,
    interval: float, end_s: float | None,
) -> None:
    """At end of stream: raise if decoding stopped well before where the stream says it ends.

    Uses the video stream's own declared end; the container's duration only for single-stream
    files, as it also covers audio that may legitimately outlast the video.
    """
    expected = stream_end_s(container, stream)
    if expected is None and len(container.streams) == 1:
        duration: int | None = container.duration
        expected = None if duration is None else duration / av.time_base
    if expected is None or reached is None:
        return
    wanted = expected if end_s is None else min(end_s, expected)
    if wanted - reached > TRUNCATION_SLACK_S + 3 * interval:
        raise truncation_error(src, "video", reached, expected)


def _packet_times(
    src: str, start_s: float | None, end_s: float | None, *, allow_seek: bool = True,
) -> list[float] | None:
    """Sorted file times of the video frames in ``[start_s, end_s)``, from packet timestamps alone
    (demuxing without decoding is cheap). None if some packet carries no timestamp."""
    times: list[float] = []
    with open_container(src) as container:
        stream = require_video(container, src)
        check_bounds(src, start_s, end_s, file_duration_s(container, src))
        origin_s = container_start_s(container)
        seeked = (allow_seek and start_s is not None and start_s > 0
                  and seek(container, stream, src, start_s))
        first = True
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packets PyAV appends at the end
                if packet.is_discard:
                    continue  # pre-roll that an edit list cuts; the decoder drops it too
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None or packet.time_base is None:
                    return None
                time_s = float(ts * packet.time_base) - origin_s
                if first and seeked and start_s is not None and time_s > start_s + SEEK_SLACK_S:
                    break  # the seek landed after the clip start (index-less formats): rescan
                first = False
                if end_s is not None and time_s >= end_s + _PACKET_TIME_MARGIN_S:
                    break
                if (start_s is None or time_s >= start_s - SEEK_SLACK_S) and (
                        end_s is None or time_s < end_s - SEEK_SLACK_S):
                    times.append(time_s)
        except av.error.FFmpegError as exc:
            raise BadMediaError(f"{src}: error while reading the file: {exc}; re-download or "
                                "re-encode it") from exc
    if seeked and (first or not times):
        return _packet_times(src, start_s, end_s, allow_seek=False)
    times.sort()
    return times


class _Nearest:
    """For each target time, the decoded frame nearest to it, never the same frame twice.

    Fed one decoded frame at a time (:meth:`push`), it holds at most the previous frame. A target whose
    nearest frame was already taken (a target rate above the native one) is dropped, so times strictly
    increase.
    """

    def __init__(self, targets: Iterator[float]) -> None:
        self._targets = targets
        self._target = next(targets, None)
        self._prev: _Decoded | None = None
        self._prev_taken = False

    @property
    def done(self) -> bool:
        """No target left: later frames can be ignored."""
        return self._target is None

    def push(self, cur: _Decoded) -> list[_Decoded]:
        """The frames selected once ``cur`` (the next decoded frame) is known, in order."""
        out: list[_Decoded] = []
        cur_taken = False
        while self._target is not None and cur.time_s >= self._target - SEEK_SLACK_S:
            if self._prev is not None and self._target - self._prev.time_s < cur.time_s - self._target:
                if not self._prev_taken:
                    self._prev_taken = True
                    out.append(self._prev)
            elif not cur_taken:
                cur_taken = True
                out.append(cur)
            self._target = next(self._targets, None)
        self._prev, self._prev_taken = cur, cur_taken
        return out

    def finish(self) -> list[_Decoded]:
        """At the end of the frames: a target after the last frame but while it is still shown (before
        its display interval ends) is served by it; later targets lie past the end of the video."""
        target, prev = self._target, self._prev
        if (target is not None and prev is not None and not self._prev_taken
                and target < prev.time_s + prev.interval_s - SEEK_SLACK_S):
            return [prev]
        return []


def _grid(origin: float, step: float, stop: float) -> Iterator[float]:
    """``origin + k * step`` for k = 0, 1, ... while below ``stop`` (computed, not accumulated, so
    long videos do not drift)."""
    k = 0
    while (t := origin + k * step) < stop - SEEK_SLACK_S:
        yield t
        k += 1


class _Ticks:
    """Sample at ``fps``: targets every ``1/fps`` s from the first frame of the clip to its end."""

    def __init__(self, fps: float, end_s: float | None) -> None:
        self._fps = fps
        self._stop = math.inf if end_s is None else end_s
        self._nearest: _Nearest | None = None

    @property
    def done(self) -> bool:
        return self._nearest is not None and self._nearest.done

    def push(self, cur: _Decoded) -> list[_Decoded]:
        if self._nearest is None:
            self._nearest = _Nearest(_grid(cur.time_s, 1.0 / self._fps, self._stop))
        return self._nearest.push(cur)

    def finish(self) -> list[_Decoded]:
        return [] if self._nearest is None else self._nearest.finish()


class _Every:
    """Every decoded frame."""

    done = False

    def push(self, cur: _Decoded) -> list[_Decoded]:
        return [cur]

    def finish(self) -> list[_Decoded]:
        return []


_Selector = _Nearest | _Ticks | _Every


def _selector(src: str, sampling: FrameSampling, start_s: float | None, end_s: float | None) -> _Selector:
    if sampling.fps is not None:
        return _Ticks(sampling.fps, end_s)
    if sampling.n_frames is not None:
        return _Nearest(iter(_uniform_targets(src, start_s, end_s, sampling.n_frames)))
    return _Every()


def _uniform_indices(n: int, k: int) -> npt.NDArray[np.int64]:
    """``k`` indices spread uniformly over ``range(n)`` as ``linspace(0, n - 1, k).round()``, without
    repeats (so ``k >= n`` gives every index)."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _uniform_targets(src: str, start_s: float | None, end_s: float | None, k: int) -> list[float]:
    """Times of the ``k`` uniformly spread frames of the clip, from the packet pre-scan, falling back
    to a decode pass (still without RGB conversion) when packets carry no timestamps."""
    times = _packet_times(src, start_s, end_s)
    if times is None:
        times = [decoded.time_s for decoded in _video_source(src, start_s, end_s)]
    if not times:
        return []
    return [times[i] for i in _uniform_indices(len(times), k)]


def _select_frames(
    src: str, samplings: Sequence[FrameSampling], start_s: float | None, end_s: float | None,
) -> Iterator[tuple[int, _Decoded | None]]:
    """One decode pass serving several samplings: ``(k, frame)`` for each frame sampling ``k`` selects,
    then ``(k, None)`` once sampling ``k`` is complete. Decoding stops when every sampling is."""
    selectors = [_selector(src, sampling, start_s, end_s) for sampling in samplings]
    source = _video_source(src, start_s, end_s)
    finished = [False] * len(selectors)
    try:
        for decoded in source:
            for k, selector in enumerate(selectors):
                if finished[k]:
                    continue
                for frame in selector.push(decoded):
                    yield k, frame
                if selector.done:
                    finished[k] = True
                    yield k, None
            if all(finished):
                return
        for k, selector in enumerate(selectors):
            if not finished[k]:
                for frame in selector.finish():
                    yield k, frame
                yield k, None
    finally:
        # Samplers stop pulling once their targets are used up; close the decoder (and its file)
        # now rather than whenever the suspended generator is garbage-collected.
        source.close()


def _frame_bytes(frame: av.VideoFrame) -> int:
    return sum(plane.buffer_size for plane in frame.planes)


def _fresh_frames(src: str, sampling: FrameSampling, start_s: float | None,
                  end_s: float | None) -> Generator[_Decoded, None, None]:
    """The frames ``sampling`` selects, from a pass of their own."""
    for _, decoded in _select_frames(src, (sampling,), start_s, end_s):
        if decoded is not None:
            yield decoded


def _shared_frames(memo: DecodeMemo, src: str, sampling: FrameSampling, start_s: float | None,
                   end_s: float | None) -> Generator[_Decoded, None, None]:
    """The frames ``sampling`` selects, from the memo or from one pass that also selects (and keeps) the
    frames of every other sampling the task declared; streamed without the memo if they do not fit."""
    memo.note_request(MediaNeeds(frame_samplings=frozenset({sampling})))
    clip = ("frames", src, start_s, end_s)
    # Decoding happens inside kept_or_decode, never across a yield: a consumer that stops or fails
    # mid-item must not leave other threads waiting for this file.
    kept = (_OVER_BUDGET if memo.has((*clip, _OVER_BUDGET)) else
            memo.kept_or_decode(clip, sampling, lambda: _decode_and_keep(memo, clip, src, sampling, start_s,
                                                                         end_s)))
    if kept is _OVER_BUDGET:
        yield from _fresh_frames(src, sampling, start_s, end_s)
    elif isinstance(kept, Failed):
        raise kept.error()
    else:
        yield from kept


_OVER_BUDGET: Final = Failed("over the decode memo's budget")


def _decode_and_keep(memo: DecodeMemo, clip: tuple[str, str, float | None, float | None], src: str,
                     sampling: FrameSampling, start_s: float | None, end_s: float | None,
                     ) -> list[_Decoded] | Failed:
    """One pass selecting the frames of ``sampling`` and of every other declared sampling, all kept in
    the memo; :data:`_OVER_BUDGET` (nothing kept) when they do not fit in what is left of the budget."""
    samplings = [sampling, *(s for s in memo.needs_for(src).frame_samplings
                             if s != sampling and not memo.has((*clip, s)))]
    selected: list[list[_Decoded]] = [[] for _ in samplings]
    complete: dict[int, list[_Decoded] | Failed] = {}
    reserved = 0
    try:
        for k, decoded in _select_frames(src, samplings, start_s, end_s):
            if decoded is None:
                complete[k] = selected[k]
                continue
            nbytes = _frame_bytes(decoded.frame)
            if not memo.reserve(nbytes):
                memo.release(reserved)
                memo.count_dropped()
                memo.put((*clip, _OVER_BUDGET), _OVER_BUDGET)  # later requests stream straight away
                return _OVER_BUDGET
            reserved += nbytes
            selected[k].append(decoded)
    except BadMediaError as exc:
        for k in range(len(samplings)):
            complete.setdefault(k, Failed(str(exc), type(exc)))
        memo.release(sum(_frame_bytes(d.frame) for k, frames in enumerate(selected)
                         if complete[k] is not frames for d in frames))
    for k, outcome in complete.items():
        memo.put((*clip, samplings[k]), outcome)
    return complete[0]


def iter_frames(
    path: str | Path,
    *,
    fps: float | None = None,
    n_frames: int | None = None,
    size: tuple[int, int] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Iterator[VideoFrame]:
    """Decode video frames as RGB, streaming one frame at a time.

    With neither ``fps`` nor ``n_frames``, yields every frame. With ``fps=F``, yields one frame per
    ``1/F`` s tick starting at the clip's first frame: the frame nearest each tick, never the same
    frame twice (so ``F`` above the native rate gives every frame once). With ``n_frames=K``, yields
    the frames at indices ``np.linspace(0, n - 1, K).round()`` of the clip's ``n`` frames (the
    uniform sampling of e.g. the SCD paper); if ``K > n`` every frame is yielded, so fewer than ``K``
    come back. ``n`` is counted exactly from packet timestamps in a pre-scan that reads the clip's
    packets without decoding them.

    Clips: ``start_s``/``end_s`` (seconds from the file start) select frames with
    ``start_s <= time_s < end_s``; decoding starts from the keyframe before ``start_s`` (seek) and
    stops after ``end_s``.

    Argument errors (``ValueError``) and missing or empty files (``BadMediaError``) are raised by
    this call; everything found while decoding is raised during iteration.

    Args:
        path: Media file (or URL FFmpeg can open).
        fps: Sampling rate in frames per second; mutually exclusive with ``n_frames``.
        n_frames: Number of frames to spread uniformly over the clip; mutually exclusive with ``fps``.
        size: ``(width, height)`` to resize to (inside swscale, during the RGB conversion); the aspect
            ratio is not preserved. None keeps the decoded size.
        start_s: Clip start, seconds from the file start; None = file start.
        end_s: Clip end (exclusive), seconds from the file start; None = file end.

    Returns:
        A generator of :class:`VideoFrame` with strictly increasing ``index`` and ``time_s``.

    Raises:
        ValueError: Invalid arguments (both ``fps`` and ``n_frames``, non-positive values, ...).
        BadMediaError: Missing/empty/corrupt/truncated file, no video stream, clip bounds outside the
            file, or no frame in the clip.
    """
    src = media_source(path)
    if fps is not None and n_frames is not None:
        raise ValueError("pass fps or n_frames, not both")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, int)
                                 or n_frames < 1):
        raise ValueError(f"n_frames must be an int >= 1, got {n_frames!r}")
    if size is not None and (len(size) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"size must be (width, height) positive ints, got {size!r}")
    check_clip_args(start_s, end_s)
    check_file(src)
    return _iter_frames(src, fps=fps, n_frames=n_frames, size=size, start_s=start_s, end_s=end_s)


def _iter_frames(
    src: str, *, fps: float | None, n_frames: int | None, size: tuple[int, int] | None,
    start_s: float | None, end_s: float | None,
) -> Iterator[VideoFrame]:
    sampling = FrameSampling(fps=fps, n_frames=n_frames)
    memo = current_memo()
    frames = (_fresh_frames(src, sampling, start_s, end_s) if memo is None
              else _shared_frames(memo, src, sampling, start_s, end_s))
    # One reformatter for the whole stream caches the swscale context; frame.reformat() and
    # frame.to_ndarray(format=...) build a fresh one per frame, which is ~10x slower at 320x240.
    reformatter = VideoReformatter()
    width, height = size if size is not None else (None, None)
    count = 0
    try:
        for decoded in frames:
            rgb = reformatter.reformat(decoded.frame, width=width, height=height, format="rgb24")
            pixels = np.ascontiguousarray(rgb.to_ndarray(), dtype=np.uint8)
            count += 1
            yield VideoFrame(index=decoded.index, time_s=decoded.time_s, rgb=pixels)
    except av.error.FFmpegError as exc:  # swscale failures; decode errors are already BadMediaError
        raise BadMediaError(f"{src}: converting a video frame to RGB failed: {exc}") from exc
    finally:
        frames.close()
    if count == 0:
        clip = describe_clip(start_s, end_s)
        raise BadMediaError(f"{src}: no video frame decoded{clip}; the video stream is empty or corrupt"
                            + ("" if not clip else ", or the clip lies outside it"))
