"""Media decoding with PyAV: probing files, streaming video frames and decoding audio.

Everything here streams in bounded memory (one decoded frame, or one audio chunk, at a time), so a
two-hour video is never held in RAM. Every problem with the *media* (missing, empty, corrupt or
truncated file, a missing stream, nothing decoded, clip bounds outside the file) raises
:class:`~affectcache.extractors.errors.BadMediaError` naming the file and the cause, which the build
runner records against the item and skips; bad *arguments* raise :class:`ValueError`.

Time convention: every time (``VideoFrame.time_s``, ``start_s``/``end_s`` clip bounds) is in seconds
from the start of the *file* (the container's start time, which is 0 for MP4/MKV/WebM and may be
non-zero for MPEG-TS), never from the clip start, so video frames and audio samples share one clock.
Clips are half-open: ``[start_s, end_s)``.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.stream import Disposition
from av.video.reformatter import VideoReformatter

from affectcache.extractors.decode_memo import DecodeMemo, Failed, FrameSampling, MediaNeeds, current_memo
from affectcache.extractors.errors import BadMediaError

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Sequence
    from pathlib import Path

    from av.audio.stream import AudioStream
    from av.container import InputContainer
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

__all__ = ["MediaInfo", "VideoFrame", "decode_audio", "iter_audio", "iter_frames", "probe"]

BOUNDS_SLACK_S: Final = 0.5
"""How far a clip's ``end_s`` may run past the file's duration before it counts as outside the file.

Manifests often round clip ends up, and container durations are only as exact as the muxer wrote
them; a clip ending a little past the end is decoded up to the end of the file instead."""

TRUNCATION_SLACK_S: Final = 0.5
"""How far decoding may stop short of the end a stream declares before the file counts as truncated
(plus three frame intervals for video), so headers that round their durations are not rejected."""

_SEEK_SLACK_S: Final = 1e-3
"""Tolerance when comparing decoded timestamps with requested times (float rounding of time bases)."""

AUDIO_PREROLL_S: Final = 0.5
"""Audio clips are decoded from this long before ``start_s`` and the extra samples dropped: after a
seek the first frames of lapped codecs are wrong (AAC's first frame misses its MDCT overlap, MP3's bit
reservoir is empty, Opus asks for 80 ms of pre-roll)."""

_SEEK_MARGINS_S: Final = (0.0, 5.0, 30.0, 120.0)
"""How far before ``start_s`` successive video seeks aim. Formats without an index (MPEG-TS) seek by
timestamp to any packet, and the decoder then drops frames up to the next keyframe, which may lie
after ``start_s``: each retry backs off further, and after the last one decoding starts at the top."""

_PACKET_TIME_MARGIN_S: Final = 2.0
"""How far past a clip's end the packet pre-scan keeps reading: packets come in decode order, so with
B-frames a frame shown before ``end_s`` can arrive a few packets after one shown after it."""


@dataclass(frozen=True, kw_only=True)
class MediaInfo:
    """What a media file contains, read from its headers (nothing is decoded)."""

    path: str
    """The path (or URL) as given, as text."""
    duration_s: float
    """Duration of the whole file in seconds (the container's, else the longest stream's)."""
    has_video: bool
    """Whether the file has a video stream (cover-art pictures in audio files do not count)."""
    has_audio: bool
    """Whether the file has an audio stream."""
    fps: float | None
    """Average frame rate of the first video stream, as measured by FFmpeg from its timestamps
    (frames over duration); None without video or when FFmpeg cannot tell."""
    n_frames: int | None
    """Frame count the video stream declares, else ``round(duration_s * fps)``; None without video."""
    width: int | None
    """Coded picture width in pixels of the first video stream; None without video."""
    height: int | None
    """Coded picture height in pixels of the first video stream; None without video."""
    audio_sample_rate: int | None
    """Sample rate in Hz of the first audio stream; None without audio."""
    audio_channels: int | None
    """Channel count of the first audio stream; None without audio."""


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


# --------------------------------------------------------------------------------------------- opening


def _source(path: str | Path) -> str:
    """The path as text for PyAV and for messages."""
    return os.fspath(path)


def _is_url(src: str) -> bool:
    return "://" in src


def _check_file(src: str) -> None:
    """Fail fast, with a clear message, for files that are missing, not files, or empty.

    URLs are left to FFmpeg. Doing this before FFmpeg gets the path turns its generic
    "Invalid data found" for a 0-byte file into an actionable message.
    """
    if _is_url(src):
        return
    try:
        st = os.stat(src)
    except FileNotFoundError as exc:
        raise BadMediaError(
            f"{src}: file not found; check the path in the manifest (relative paths resolve against "
            f"{os.getcwd()})"
        ) from exc
    except OSError as exc:
        raise BadMediaError(f"{src}: cannot access the file ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise BadMediaError(f"{src}: is a directory, not a media file")
    if st.st_size == 0:
        raise BadMediaError(
            f"{src}: file is empty (0 bytes), e.g. an interrupted download or copy; re-download or "
            "re-export it"
        )


def _open(src: str) -> InputContainer:
    """Open ``src`` for reading, turning FFmpeg's errors into :class:`BadMediaError`."""
    _check_file(src)
    try:
        return av.open(src, mode="r")
    except av.error.InvalidDataError as exc:
        raise BadMediaError(
            f"{src}: not a readable media file ({exc.strerror or exc}): it is corrupt, truncated (an "
            "interrupted download or recording: an MP4 whose index was never written cannot be "
            "opened), or not audio/video at all; re-download or re-encode it"
        ) from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise BadMediaError(f"{src}: cannot open the file: {exc}") from exc


def _container_start_s(container: InputContainer) -> float:
    """Start time of the file in seconds (the origin of every time this module reports)."""
    start: int | None = container.start_time
    return 0.0 if start is None else start / av.time_base


def _video_stream(container: InputContainer) -> VideoStream | None:
    """The first real video stream: attached pictures (cover art in audio files) are not video."""
    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:
            return stream
    return None


def _audio_stream(container: InputContainer) -> AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _stream_kinds(container: InputContainer) -> list[str]:
    kinds: list[str] = sorted({s.type for s in container.streams})
    return kinds or ["no streams at all"]


def _require_video(container: InputContainer, src: str) -> VideoStream:
    stream = _video_stream(container)
    if stream is None:
        kinds = _stream_kinds(container)
        raise BadMediaError(
            f"{src}: has no video stream (it has: {', '.join(kinds)}); frame-based extractors cannot "
            "use it — point the manifest at the video file, or use audio-only modalities for it"
        )
    return stream


def _require_audio(container: InputContainer, src: str) -> AudioStream:
    stream = _audio_stream(container)
    if stream is None:
        kinds = _stream_kinds(container)
        raise BadMediaError(
            f"{src}: has no audio stream (it has: {', '.join(kinds)}); audio extractors cannot use it "
            "— point the manifest at a file with the soundtrack, or leave audio modalities out for it"
        )
    return stream


def _stream_end_s(container: InputContainer, stream: AudioStream | VideoStream) -> float | None:
    """End of ``stream`` in file time (start + duration) if its header says, else None."""
    duration: int | None = stream.duration
    time_base = stream.time_base
    if duration is None or time_base is None:
        return None
    start: int | None = stream.start_time
    start_s = 0.0 if start is None else float(start * time_base) - _container_start_s(container)
    return start_s + float(duration * time_base)


def _rate(stream: VideoStream) -> float | None:
    """The measured average frame rate, falling back to FFmpeg's guess; None if neither is known."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _scan_end_s(src: str) -> float:
    """End time of the last packet, for files whose headers give no duration.

    Reads every packet once without decoding, in a container of its own so the caller's read
    position is untouched.
    """
    end_s = 0.0
    with _open(src) as container:
        start_s = _container_start_s(container)
        try:
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                end_pts = packet.pts + (packet.duration or 0)
                end_s = max(end_s, float(end_pts * packet.time_base) - start_s)
        except av.error.FFmpegError as exc:
            raise BadMediaError(f"{src}: error while reading the file: {exc}; re-download or "
                                "re-encode it") from exc
    return end_s


def _file_duration_s(container: InputContainer, src: str) -> float:
    """Duration of the file: the container's, else the longest stream's, else from the packets."""
    duration: int | None = container.duration
    if duration is not None and duration > 0:
        return duration / av.time_base
    ends = [
        end for stream in (_video_stream(container), _audio_stream(container)) if stream is not None
        if (end := _stream_end_s(container, stream)) is not None
    ]
    return max(ends) if ends else _scan_end_s(src)


def probe(path: str | Path) -> MediaInfo:
    """Read what a media file contains from its headers.

    Nothing is decoded, so a file truncated after its header can probe fine and still fail in
    :func:`iter_frames` / :func:`decode_audio`.

    Args:
        path: Media file (or URL FFmpeg can open).

    Returns:
        The file's duration and its first video and audio streams' parameters.

    Raises:
        BadMediaError: The file is missing, empty, unreadable, or has neither video nor audio.
    """
    src = _source(path)
    with _open(src) as container:
        video = _video_stream(container)
        audio = _audio_stream(container)
        if video is None and audio is None:
            raise BadMediaError(f"{src}: has neither a video nor an audio stream")
        duration_s = _file_duration_s(container, src)
        fps: float | None = None
        n_frames: int | None = None
        width: int | None = None
        height: int | None = None
        if video is not None:
            fps = _rate(video)
            n_frames = video.frames or None
            if n_frames is None and fps is not None:
                video_end = _stream_end_s(container, video)
                n_frames = round((duration_s if video_end is None else video_end) * fps)
            width = video.codec_context.width or None
            height = video.codec_context.height or None
        return MediaInfo(
            path=src,
            duration_s=duration_s,
            has_video=video is not None,
            has_audio=audio is not None,
            fps=fps,
            n_frames=n_frames,
            width=width,
            height=height,
            audio_sample_rate=audio.sample_rate if audio is not None else None,
            audio_channels=audio.channels if audio is not None else None,
        )


# ---------------------------------------------------------------------------------------- argument checks


def _check_clip_args(start_s: float | None, end_s: float | None) -> None:
    if start_s is not None and not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be a finite number >= 0, got {start_s!r}")
    if end_s is not None and not (math.isfinite(end_s) and end_s > 0):
        raise ValueError(f"end_s must be a finite number > 0, got {end_s!r}")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be greater than start_s ({start_s})")


def _check_bounds(src: str, start_s: float | None, end_s: float | None, duration_s: float) -> None:
    """Clip bounds outside the file are a per-item data problem (a manifest row that does not match
    its file), hence BadMediaError rather than ValueError."""
    if duration_s <= 0:
        return  # unknown duration: decoding will tell whether the clip is there
    if start_s is not None and start_s >= duration_s:
        raise BadMediaError(
            f"{src}: clip starts at {start_s:.3f} s but the file is only {duration_s:.3f} s long; check "
            "the manifest's start_s/end_s (seconds from the start of the file)"
        )
    if end_s is not None and end_s > duration_s + BOUNDS_SLACK_S:
        raise BadMediaError(
            f"{src}: clip ends at {end_s:.3f} s but the file is only {duration_s:.3f} s long; check the "
            "manifest's start_s/end_s (seconds from the start of the file)"
        )


def _truncation_error(src: str, what: str, reached_s: float, expected_s: float) -> BadMediaError:
    return BadMediaError(
        f"{src}: {what} decoding stopped at {reached_s:.3f} s but the file declares {expected_s:.3f} s: "
        "the file is truncated or corrupt (an interrupted download or recording); re-download or "
        "re-encode it"
    )


# ------------------------------------------------------------------------------------------------ video


@dataclass(frozen=True)
class _Decoded:
    """A decoded (not yet converted) frame with its file time and source index."""

    index: int
    time_s: float
    interval_s: float
    """Nominal display duration (1 / average frame rate; 0 if unknown)."""
    frame: av.VideoFrame


def _seek(container: InputContainer, stream: VideoStream | AudioStream, src: str, start_s: float) -> bool:
    """Seek ``stream`` to the keyframe at or before ``start_s``; False if the file cannot seek."""
    time_base = stream.time_base
    if time_base is None:
        return False
    target = math.floor((start_s + _container_start_s(container)) / time_base)
    try:
        container.seek(target, stream=stream, backward=True)
    except av.error.FFmpegError as exc:
        # Some inputs (pipes, a few raw formats) cannot seek; decoding from the start still works.
        logger.debug("%s: seek to %.3f s failed (%s); decoding from the start", src, start_s, exc)
        return False
    return True


def _decode_video(container: InputContainer, stream: VideoStream, src: str) -> Iterator[av.VideoFrame]:
    """Decoded frames of ``stream``, with FFmpeg errors mid-stream turned into BadMediaError."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise BadMediaError(
            f"{src}: video decoding failed: {exc}; the file is corrupt or truncated — re-download or "
            "re-encode it"
        ) from exc


def _video_source(
    src: str, start_s: float | None, end_s: float | None, *, attempt: int = 0,
) -> Generator[_Decoded, None, None]:
    """Every decoded frame with ``start_s <= time_s < end_s``, in presentation order.

    Seeks to the keyframe before ``start_s`` and skips forward. If the first frame decoded after the
    seek is later than ``start_s`` (or none is), the seek overshot (see ``_SEEK_MARGINS_S``) and
    decoding restarts from further back, rather than silently losing frames. At the natural end of
    the stream, checks that decoding got as far as the stream declares.
    """
    with _open(src) as container:
        stream = _require_video(container, src)
        # Frame + slice threading: decoding is the bottleneck, and frames come out in order anyway.
        stream.thread_type = "AUTO"
        _check_bounds(src, start_s, end_s, _file_duration_s(container, src))
        origin_s = _container_start_s(container)
        fps = _rate(stream)
        stream_start: int | None = stream.start_time
        time_base = stream.time_base
        first_s: float | None = None
        if stream_start is not None and time_base is not None:
            first_s = float(stream_start * time_base) - origin_s
        interval_s = 1.0 / fps if fps else 0.0
        seek_s = None
        if start_s is not None and attempt < len(_SEEK_MARGINS_S):
            seek_s = start_s - _SEEK_MARGINS_S[attempt]
        seeked = seek_s is not None and seek_s > 0 and _seek(container, stream, src, seek_s)
        if seeked and first_s is None:
            first_s = 0.0  # indices count from the file start, not from where the seek landed

        last_index = -1
        last_time_s: float | None = None
        last_end_s: float | None = None  # when the last decoded frame stops being shown
        checked_seek = not seeked
        for frame in _decode_video(container, stream, src):
            if frame.pts is not None and frame.time_base is not None:
                time_s = float(frame.pts * frame.time_base) - origin_s
            else:  # no timestamp (rare raw streams): assume constant rate after the previous frame
                time_s = 0.0 if last_time_s is None else last_time_s + (interval_s or 0.04)
            if not checked_seek:
                checked_seek = True
                assert start_s is not None  # seeked implies a start
                if time_s > start_s + _SEEK_SLACK_S:
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
            if start_s is not None and time_s < start_s - _SEEK_SLACK_S:
                continue
            if end_s is not None and time_s >= end_s - _SEEK_SLACK_S:
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
    expected = _stream_end_s(container, stream)
    if expected is None and len(container.streams) == 1:
        duration: int | None = container.duration
        expected = None if duration is None else duration / av.time_base
    if expected is None or reached is None:
        return
    wanted = expected if end_s is None else min(end_s, expected)
    if wanted - reached > TRUNCATION_SLACK_S + 3 * interval:
        raise _truncation_error(src, "video", reached, expected)


def _packet_times(
    src: str, start_s: float | None, end_s: float | None, *, allow_seek: bool = True,
) -> list[float] | None:
    """Sorted file times of the video frames in ``[start_s, end_s)``, from packet timestamps alone
    (demuxing without decoding is cheap). None if some packet carries no timestamp."""
    times: list[float] = []
    with _open(src) as container:
        stream = _require_video(container, src)
        _check_bounds(src, start_s, end_s, _file_duration_s(container, src))
        origin_s = _container_start_s(container)
        seeked = (allow_seek and start_s is not None and start_s > 0
                  and _seek(container, stream, src, start_s))
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
                if first and seeked and start_s is not None and time_s > start_s + _SEEK_SLACK_S:
                    break  # the seek landed after the clip start (index-less formats): rescan
                first = False
                if end_s is not None and time_s >= end_s + _PACKET_TIME_MARGIN_S:
                    break
                if (start_s is None or time_s >= start_s - _SEEK_SLACK_S) and (
                        end_s is None or time_s < end_s - _SEEK_SLACK_S):
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
        while self._target is not None and cur.time_s >= self._target - _SEEK_SLACK_S:
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
                and target < prev.time_s + prev.interval_s - _SEEK_SLACK_S):
            return [prev]
        return []


def _grid(origin: float, step: float, stop: float) -> Iterator[float]:
    """``origin + k * step`` for k = 0, 1, ... while below ``stop`` (computed, not accumulated, so
    long videos do not drift)."""
    k = 0
    while (t := origin + k * step) < stop - _SEEK_SLACK_S:
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
        raise BadMediaError(kept.message)
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
            complete.setdefault(k, Failed(str(exc)))
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
    src = _source(path)
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
    _check_clip_args(start_s, end_s)
    _check_file(src)
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
        clip = _describe_clip(start_s, end_s)
        raise BadMediaError(f"{src}: no video frame decoded{clip}; the video stream is empty or corrupt"
                            + ("" if not clip else ", or the clip lies outside it"))


def _describe_clip(start_s: float | None, end_s: float | None) -> str:
    if start_s is None and end_s is None:
        return ""
    start = "file start" if start_s is None else f"{start_s:.3f} s"
    end = "file end" if end_s is None else f"{end_s:.3f} s"
    return f" between {start} and {end}"


# ------------------------------------------------------------------------------------------------ audio


def _check_audio_args(sample_rate: int, start_s: float | None, end_s: float | None) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    _check_clip_args(start_s, end_s)


def iter_audio(
    path: str | Path,
    *,
    sample_rate: int,
    chunk_s: float = 30.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Decode the first audio stream as mono float32 at ``sample_rate``, in chunks.

    Channels are averaged down to mono and resampled by FFmpeg's resampler (flushed at the end).
    The clip is cut at exact sample bounds: sample ``i`` of the output lies at
    ``start_s + i / sample_rate`` (``start_s`` rounded to a whole sample; the stream's first sample,
    normally 0 s, without ``start_s``). Without ``end_s``, decoding stops where the stream says it
    ends, which drops the encoder padding AAC adds at the end (its priming at the start is removed by
    the MP4 edit list); other formats can still leave up to a few thousand extra samples.

    Argument errors (``ValueError``) and missing or empty files (``BadMediaError``) are raised by
    this call; everything found while decoding is raised during iteration.

    Args:
        path: Media file (or URL FFmpeg can open).
        sample_rate: Output sample rate in Hz.
        chunk_s: Chunk length in seconds; every chunk but the last has exactly
            ``round(chunk_s * sample_rate)`` samples.
        start_s: Clip start, seconds from the file start; None = file start.
        end_s: Clip end (exclusive), seconds from the file start; None = end of the audio.

    Returns:
        A generator of 1-D float32 arrays (samples in [-1, 1] for normal audio).

    Raises:
        ValueError: Invalid arguments.
        BadMediaError: Missing/empty/corrupt/truncated file, no audio stream, clip bounds outside
            the file, or no sample decoded.
    """
    src = _source(path)
    _check_audio_args(sample_rate, start_s, end_s)
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError(f"chunk_s must be a finite number > 0, got {chunk_s!r}")
    chunk_len = max(1, round(chunk_s * sample_rate))
    _check_file(src)
    return _rechunk(_audio_blocks(src, sample_rate, start_s, end_s), chunk_len, src, start_s, end_s)


def _rechunk(
    blocks: Iterator[npt.NDArray[np.float32]], chunk_len: int, src: str, start_s: float | None,
    end_s: float | None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Regroup variable-length blocks into ``chunk_len``-sample chunks (the last may be shorter)."""
    pending: list[npt.NDArray[np.float32]] = []
    n_pending = 0
    total = 0
    for block in blocks:
        pending.append(block)
        n_pending += block.size
        while n_pending >= chunk_len:
            joined = np.concatenate(pending)
            yield joined[:chunk_len]
            total += chunk_len
            rest = joined[chunk_len:]
            pending, n_pending = ([rest], rest.size) if rest.size else ([], 0)
    if n_pending:
        total += n_pending
        yield np.concatenate(pending)
    if total == 0:
        raise _no_audio_error(src, start_s, end_s)


def _decode_audio_frames(container: InputContainer, stream: AudioStream, src: str) -> Iterator[av.AudioFrame]:
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise BadMediaError(
            f"{src}: audio decoding failed: {exc}; the file is corrupt or truncated — re-download or "
            "re-encode it"
        ) from exc


@dataclass(eq=False)
class _RateCut:
    """One output rate of an audio pass: its resampler and where its clip starts and ends."""

    rate: int
    lo: int | None
    """First wanted sample (file-time index at ``rate``); None = from the stream start."""
    hi: int | None
    """End (exclusive) of the wanted samples; None = to the stream end."""
    resampler: av.AudioResampler
    pos: int | None = None
    """File-time sample index of the next resampled sample; None until the first output."""


_AudioEvent = tuple[int, "npt.NDArray[np.float32] | BadMediaError | None"]
"""``(rate, samples)`` for a block of a rate's clip, ``(rate, None)`` when that rate's clip is complete,
``(rate, error)`` when that rate failed on its own (truncation)."""


def _audio_pass(
    src: str, rates: Sequence[int], start_s: float | None, end_s: float | None, *, allow_seek: bool = True,
) -> Iterator[_AudioEvent]:
    """Decode the clip once and resample it to each of ``rates``, each through its own resampler.

    Per rate, the samples are exactly those of a pass for that rate alone: each resampler sees the same
    decoded frames and stops where it would alone. Failures that hit every rate (no audio stream,
    decoding errors) are raised.
    """
    with _open(src) as container:
        stream = _require_audio(container, src)
        _check_bounds(src, start_s, end_s, _file_duration_s(container, src))
        origin_s = _container_start_s(container)
        declared_end_s = _stream_end_s(container, stream)
        hi_s = end_s if declared_end_s is None else (
            declared_end_s if end_s is None else min(end_s, declared_end_s))
        seek_s = None if start_s is None else start_s - AUDIO_PREROLL_S
        seeked = allow_seek and seek_s is not None and seek_s > 0 and _seek(container, stream, src, seek_s)
        active = [_RateCut(rate=rate, lo=None if start_s is None else round(start_s * rate),
                           hi=None if hi_s is None else round(hi_s * rate),
                           resampler=av.AudioResampler(format="flt", layout="mono", rate=rate))
                  for rate in rates]
        retry: list[int] = []  # rates whose first samples came after the clip start: the seek overshot
        for frame in _chain_flush(_decode_audio_frames(container, stream, src)):
            for cut in list(active):
                for out in _resample(cut.resampler, frame, src):
                    if cut.pos is None:
                        if out.pts is not None and out.time_base is not None:
                            cut.pos = round((float(out.pts * out.time_base) - origin_s) * cut.rate)
                        else:
                            cut.pos = 0
                        if (seeked and cut.lo is not None
                                and cut.pos > cut.lo + round(_SEEK_SLACK_S * cut.rate) + 1):
                            active.remove(cut)
                            retry.append(cut.rate)
                            break
                    samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    first, cut.pos = cut.pos, cut.pos + samples.size
                    a = 0 if cut.lo is None else min(max(cut.lo - first, 0), samples.size)
                    b = samples.size if cut.hi is None else min(max(cut.hi - first, 0), samples.size)
                    if b > a:
                        yield cut.rate, samples[a:b]
                    if cut.hi is not None and cut.pos >= cut.hi:
                        active.remove(cut)
                        yield cut.rate, None
                        break
            if not active:
                break
        for cut in active:  # the stream ended before these rates reached their clip end
            if seeked and cut.pos is None:  # nothing at all came after the seek: retry from the top
                retry.append(cut.rate)
            elif declared_end_s is not None and cut.pos is not None and (
                    (declared_end_s if end_s is None else min(end_s, declared_end_s)) - cut.pos / cut.rate
                    > TRUNCATION_SLACK_S):
                yield cut.rate, _truncation_error(src, "audio", cut.pos / cut.rate, declared_end_s)
            else:
                yield cut.rate, None
    if retry:  # the container is closed; decode these rates from the top
        logger.debug("%s: audio seek to %.3f s missed the clip start; decoding from the start", src, seek_s)
        yield from _audio_pass(src, retry, start_s, end_s, allow_seek=False)


def _audio_blocks(
    src: str, sample_rate: int, start_s: float | None, end_s: float | None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Resampled mono blocks covering samples ``[round(start_s*sr), round(end_s*sr))`` of file time."""
    for _, event in _audio_pass(src, (sample_rate,), start_s, end_s):
        if isinstance(event, BadMediaError):
            raise event
        if event is None:
            return
        yield event


def _resample(resampler: av.AudioResampler, frame: av.AudioFrame | None, src: str) -> list[av.AudioFrame]:
    """``resampler.resample(frame)`` (None flushes its buffered tail), failures as BadMediaError."""
    try:
        return resampler.resample(frame)
    except (av.error.FFmpegError, ValueError) as exc:
        # ValueError: PyAV refuses frames whose format/layout/rate changed mid-stream.
        raise BadMediaError(f"{src}: resampling the audio failed: {exc}") from exc


def _chain_flush(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame | None]:
    """The decoded frames, then None: ``resample(None)`` flushes the resampler's buffered tail."""
    yield from frames
    yield None


def _no_audio_error(src: str, start_s: float | None, end_s: float | None) -> BadMediaError:
    clip = _describe_clip(start_s, end_s)
    return BadMediaError(f"{src}: no audio sample decoded{clip}; the audio stream is empty or corrupt"
                         + ("" if not clip else ", or the clip lies outside it"))


def _decode_audio_rates(
    src: str, rates: Sequence[int], start_s: float | None, end_s: float | None,
) -> dict[int, npt.NDArray[np.float32] | BadMediaError]:
    """The whole clip at each rate from one decode, or the error that rate ended with."""
    blocks: dict[int, list[npt.NDArray[np.float32]]] = {rate: [] for rate in rates}
    outcome: dict[int, npt.NDArray[np.float32] | BadMediaError] = {}
    try:
        for rate, event in _audio_pass(src, rates, start_s, end_s):
            if isinstance(event, np.ndarray):
                blocks[rate].append(event)
            elif event is not None:
                outcome[rate] = event
            elif blocks[rate]:
                outcome[rate] = np.concatenate(blocks.pop(rate))  # a copy, off the decoder's buffers
            else:
                outcome[rate] = _no_audio_error(src, start_s, end_s)
    except BadMediaError as exc:
        for rate in rates:
            outcome.setdefault(rate, exc)
    return outcome


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int,
    start_s: float | None = None,
    end_s: float | None = None,
) -> npt.NDArray[np.float32]:
    """Decode the first audio stream (or the ``start_s``..``end_s`` clip of it) to one mono array.

    Same semantics as :func:`iter_audio`, concatenated; for long files prefer :func:`iter_audio`.
    Inside :func:`~affectcache.extractors.decode_memo.shared_decoding`, one decode serves every declared
    sample rate (each resampled on its own, so the samples are those of a lone call) and is reused.

    Args:
        path: Media file (or URL FFmpeg can open).
        sample_rate: Output sample rate in Hz.
        start_s: Clip start, seconds from the file start; None = file start.
        end_s: Clip end (exclusive), seconds from the file start; None = end of the audio.

    Returns:
        1-D float32 array of mono samples at ``sample_rate``.

    Raises:
        ValueError: Invalid arguments.
        BadMediaError: Missing/empty/corrupt/truncated file, no audio stream, clip bounds outside
            the file, or no sample decoded.
    """
    src = _source(path)
    _check_audio_args(sample_rate, start_s, end_s)
    _check_file(src)
    memo = current_memo()
    if memo is None:
        result = _decode_audio_rates(src, (sample_rate,), start_s, end_s)[sample_rate]
    else:
        result = _shared_audio(memo, src, sample_rate, start_s, end_s)
    if isinstance(result, BadMediaError):
        raise result
    return result


def _shared_audio(memo: DecodeMemo, src: str, sample_rate: int, start_s: float | None,
                  end_s: float | None) -> npt.NDArray[np.float32] | BadMediaError:
    memo.note_request(MediaNeeds(audio_rates=frozenset({sample_rate})))
    clip = ("audio", src, start_s, end_s)
    kept = memo.kept_or_decode(clip, sample_rate, lambda: _decode_audio_and_keep(memo, clip, src, sample_rate,
                                                                                 start_s, end_s))
    if isinstance(kept, Failed):
        return BadMediaError(kept.message)
    assert isinstance(kept, (np.ndarray, BadMediaError))
    # A copy: callers may modify their waveform in place, and the kept one serves other extractors.
    return kept.copy() if isinstance(kept, np.ndarray) else kept


def _decode_audio_and_keep(memo: DecodeMemo, clip: tuple[str, str, float | None, float | None], src: str,
                           sample_rate: int, start_s: float | None, end_s: float | None,
                           ) -> npt.NDArray[np.float32] | BadMediaError:
    """One decode resampled to ``sample_rate`` and every other declared rate, kept within the budget."""
    rates = [sample_rate, *sorted(r for r in memo.needs_for(src).audio_rates
                                  if r != sample_rate and not memo.has((*clip, r)))]
    outcomes = _decode_audio_rates(src, rates, start_s, end_s)
    for rate, outcome in outcomes.items():
        if isinstance(outcome, BadMediaError):
            memo.put((*clip, rate), Failed(str(outcome)))
        elif memo.reserve(outcome.nbytes):
            memo.put((*clip, rate), outcome)
        else:
            memo.count_dropped()
    return outcomes[sample_rate]
