"""Opening media files with PyAV, probing what they contain, and the checks every decode shares.

Every problem with the *media* (missing, empty, corrupt or truncated file, a missing stream, nothing
decoded, clip bounds outside the file) raises :class:`~affectcache.extractors.core.errors.BadMediaError`
naming the file and the cause, which the build runner records against the item and skips; bad *arguments*
raise :class:`ValueError`.

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
from typing import TYPE_CHECKING, Any, Final

import av
import av.error
from av.stream import Disposition

from affectcache.extractors.core.errors import BadMediaError, MissingStreamError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from av.audio.stream import AudioStream
    from av.container import InputContainer
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

# MediaInfo and probe are the public API; the other public names are shared by the video and audio
# decoders of this package.
__all__ = ["MediaInfo", "probe"]

BOUNDS_SLACK_S: Final = 0.5
"""How far a clip's ``end_s`` may run past the file's duration before it counts as outside the file.

Manifests often round clip ends up, and container durations are only as exact as the muxer wrote
them; a clip ending a little past the end is decoded up to the end of the file instead."""

TRUNCATION_SLACK_S: Final = 0.5
"""How far decoding may stop short of the end a stream declares before the file counts as truncated
(plus three frame intervals for video), so headers that round their durations are not rejected."""

SEEK_SLACK_S: Final = 1e-3
"""Tolerance when comparing decoded timestamps with requested times (float rounding of time bases)."""


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


# --------------------------------------------------------------------------------------------- opening


def media_source(path: str | Path) -> str:
    """The path as text for PyAV and for messages."""
    return os.fspath(path)


def _is_url(src: str) -> bool:
    return "://" in src


def check_file(src: str) -> None:
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


def open_container(src: str) -> InputContainer:
    """Open ``src`` for reading, turning FFmpeg's errors into :class:`BadMediaError`."""
    check_file(src)
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


def container_start_s(container: InputContainer) -> float:
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


def require_video(container: InputContainer, src: str) -> VideoStream:
    stream = _video_stream(container)
    if stream is None:
        kinds = _stream_kinds(container)
        raise MissingStreamError(
            f"{src}: has no video stream (it has: {', '.join(kinds)}); frame-based extractors cannot "
            "use it — point the manifest at the video file, or use audio-only modalities for it"
        )
    return stream


def require_audio(container: InputContainer, src: str) -> AudioStream:
    stream = _audio_stream(container)
    if stream is None:
        kinds = _stream_kinds(container)
        raise MissingStreamError(
            f"{src}: has no audio stream (it has: {', '.join(kinds)}); audio extractors cannot use it "
            "— point the manifest at a file with the soundtrack, or leave audio modalities out for it"
        )
    return stream


def stream_end_s(container: InputContainer, stream: AudioStream | VideoStream) -> float | None:
    """End of ``stream`` in file time (start + duration) if its header says, else None."""
    duration: int | None = stream.duration
    time_base = stream.time_base
    if duration is None or time_base is None:
        return None
    start: int | None = stream.start_time
    start_s = 0.0 if start is None else float(start * time_base) - container_start_s(container)
    return start_s + float(duration * time_base)


def frame_rate(stream: VideoStream) -> float | None:
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
    with open_container(src) as container:
        start_s = container_start_s(container)
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


def file_duration_s(container: InputContainer, src: str) -> float:
    """Duration of the file: the container's, else the longest stream's, else from the packets."""
    duration: int | None = container.duration
    if duration is not None and duration > 0:
        return duration / av.time_base
    ends = [
        end for stream in (_video_stream(container), _audio_stream(container)) if stream is not None
        if (end := stream_end_s(container, stream)) is not None
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
    src = media_source(path)
    with open_container(src) as container:
        video = _video_stream(container)
        audio = _audio_stream(container)
        if video is None and audio is None:
            raise BadMediaError(f"{src}: has neither a video nor an audio stream")
        duration_s = file_duration_s(container, src)
        fps: float | None = None
        n_frames: int | None = None
        width: int | None = None
        height: int | None = None
        if video is not None:
            fps = frame_rate(video)
            n_frames = video.frames or None
            if n_frames is None and fps is not None:
                video_end = stream_end_s(container, video)
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


def check_clip_args(start_s: float | None, end_s: float | None) -> None:
    if start_s is not None and not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be a finite number >= 0, got {start_s!r}")
    if end_s is not None and not (math.isfinite(end_s) and end_s > 0):
        raise ValueError(f"end_s must be a finite number > 0, got {end_s!r}")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be greater than start_s ({start_s})")


def check_bounds(src: str, start_s: float | None, end_s: float | None, duration_s: float) -> None:
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


def truncation_error(src: str, what: str, reached_s: float, expected_s: float) -> BadMediaError:
    return BadMediaError(
        f"{src}: {what} decoding stopped at {reached_s:.3f} s but the file declares {expected_s:.3f} s: "
        "the file is truncated or corrupt (an interrupted download or recording); re-download or "
        "re-encode it"
    )

def seek(container: InputContainer, stream: VideoStream | AudioStream, src: str, start_s: float) -> bool:
    """Seek ``stream`` to the keyframe at or before ``start_s``; False if the file cannot seek."""
    time_base = stream.time_base
    if time_base is None:
        return False
    target = math.floor((start_s + container_start_s(container)) / time_base)
    try:
        container.seek(target, stream=stream, backward=True)
    except av.error.FFmpegError as exc:
        # Some inputs (pipes, a few raw formats) cannot seek; decoding from the start still works.
        logger.debug("%s: seek to %.3f s failed (%s); decoding from the start", src, start_s, exc)
        return False
    return True


def describe_clip(start_s: float | None, end_s: float | None) -> str:
    if start_s is None and end_s is None:
        return ""
    start = "file start" if start_s is None else f"{start_s:.3f} s"
    end = "file end" if end_s is None else f"{end_s:.3f} s"
    return f" between {start} and {end}"


def decode_stream(container: InputContainer, stream: VideoStream | AudioStream, src: str,
                  what: str) -> Iterator[Any]:
    """Decoded frames of ``stream`` (``what`` is "video" or "audio"), with FFmpeg errors mid-stream
    turned into :class:`BadMediaError`."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise BadMediaError(
            f"{src}: {what} decoding failed: {exc}; the file is corrupt or truncated — re-download or "
            "re-encode it"
        ) from exc
