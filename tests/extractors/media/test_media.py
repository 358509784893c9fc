"""Tests of affectcache.extractors.media: probing, frame sampling, clipping, audio, streaming, bad media."""

from __future__ import annotations

import gc
import inspect
import re
import weakref
from typing import TYPE_CHECKING, Any

import av.error
import numpy as np
import pytest

from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.media.audio import decode_audio, iter_audio
from affectcache.extractors.media.probe import MediaInfo, probe
from affectcache.extractors.media.video import VideoFrame, iter_frames
from affectcache.extractors.testing.synthetic import write_test_clip
from tests.media_fixtures import remux, truncate

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# AAC frames are 1024 samples and the encoder adds priming/padding; lengths are checked to this many
# samples at the output rate (the MP4 edit list normally makes them exact).
AAC_SLACK = 2048
SR = 16000


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 10 fps, 64x48, moving square + 440 Hz tone of peak 0.5."""
    return write_test_clip(tmp_path_factory.mktemp("media") / "clip.mp4", duration_s=2.0, fps=10.0,
                           size=(64, 48))


@pytest.fixture(scope="module")
def long_gop_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 10 fps: three 2-s GOPs, so clip starts really seek."""
    return write_test_clip(tmp_path_factory.mktemp("media") / "six.mp4", duration_s=6.0, fps=10.0,
                           size=(64, 48))


def _indices(frames: list[VideoFrame]) -> list[int]:
    return [f.index for f in frames]


# ------------------------------------------------------------------------------------------------ probe


def test_probe_fields(clip: Path) -> None:
    info = probe(clip)
    assert isinstance(info, MediaInfo)
    assert info.path == str(clip)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.has_video
    assert info.has_audio
    assert info.fps == pytest.approx(10.0)
    assert info.n_frames == 20
    assert (info.width, info.height) == (64, 48)
    assert info.audio_sample_rate == 44100
    assert info.audio_channels == 1


def test_probe_single_stream_files(tmp_path: Path) -> None:
    video_only = probe(write_test_clip(tmp_path / "v.mp4", audio=False))
    assert (video_only.has_video, video_only.has_audio) == (True, False)
    assert (video_only.audio_sample_rate, video_only.audio_channels) == (None, None)
    audio_only = probe(write_test_clip(tmp_path / "a.mp4", video=False))
    assert (audio_only.has_video, audio_only.has_audio) == (False, True)
    assert (audio_only.fps, audio_only.n_frames, audio_only.width, audio_only.height) == (None,) * 4
    assert audio_only.duration_s == pytest.approx(1.0, abs=0.05)


def test_probe_ntsc_rate_and_mkv_without_frame_count(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "ntsc.mkv", duration_s=2.0, fps=30000 / 1001)
    info = probe(path)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    # Matroska stores no frame count: n_frames falls back to round(duration * fps).
    assert info.n_frames is not None
    assert abs(info.n_frames - 60) <= 1
    assert len(list(iter_frames(path))) == 60


def test_mpeg_ts_times_count_from_file_start(tmp_path: Path) -> None:
    """MPEG-TS starts its clock at ~1.4 s and its video ~23 ms after its audio: times are from the file
    start (so audio and video share a clock) and frame indices from the first frame."""
    path = write_test_clip(tmp_path / "broadcast.ts", duration_s=2.0, fps=10.0)
    frames = list(iter_frames(path))
    assert _indices(frames) == list(range(20))
    assert 0.0 <= frames[0].time_s < 0.1
    np.testing.assert_allclose(np.diff([f.time_s for f in frames]), 0.1, atol=1e-6)
    # No index and one keyframe: seeks land past the clip start and must back off.
    assert _indices(list(iter_frames(path, start_s=1.0))) == list(range(10, 20))
    assert _indices(list(iter_frames(path, start_s=1.0, n_frames=4))) == [10, 13, 16, 19]
    assert abs(decode_audio(path, sample_rate=SR).size - 2 * SR) <= AAC_SLACK
    assert abs(decode_audio(path, sample_rate=SR, start_s=0.5, end_s=1.5).size - SR) <= 1


# ----------------------------------------------------------------------------------------------- frames


def test_native_frames(clip: Path) -> None:
    frames = list(iter_frames(clip))
    assert _indices(frames) == list(range(20))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(20) / 10.0, atol=1e-6)
    for frame in frames:
        assert frame.rgb.shape == (48, 64, 3)
        assert frame.rgb.dtype == np.uint8
        assert frame.rgb.flags.c_contiguous


def test_frames_decoded_in_presentation_order(clip: Path) -> None:
    """The square moves right every frame: decoded pixels follow the timestamps (B-frames reordered)."""
    centres = []
    for frame in iter_frames(clip):
        bright = frame.rgb.mean(axis=2) > 128
        centres.append(np.nonzero(bright)[1].mean())
    assert np.all(np.diff(centres) > 0)


@pytest.mark.parametrize(("fps", "expected"), [(5.0, 10), (2.5, 5), (3.0, 6), (10.0, 20), (25.0, 20)])
def test_fps_sampling(clip: Path, fps: float, expected: int) -> None:
    frames = list(iter_frames(clip, fps=fps))
    assert len(frames) == expected
    times = np.array([f.time_s for f in frames])
    assert np.all(np.diff(times) > 0)
    assert np.all(np.diff(_indices(frames)) > 0)
    if fps <= 10.0:
        # The nearest native frame to each tick k / fps: within half a native frame interval.
        np.testing.assert_allclose(times, np.arange(expected) / fps, atol=0.05 + 1e-6)


def test_fps_sampling_is_nearest_frame(clip: Path) -> None:
    assert _indices(list(iter_frames(clip, fps=3.0))) == [0, 3, 7, 10, 13, 17]


@pytest.mark.parametrize(("k", "expected"), [
    (5, [0, 5, 10, 14, 19]),  # np.linspace(0, 19, 5).round()
    (1, [0]),
    (20, list(range(20))),
    (30, list(range(20))),  # more than available: every frame once
])
def test_uniform_n_frames(clip: Path, k: int, expected: list[int]) -> None:
    frames = list(iter_frames(clip, n_frames=k))
    assert _indices(frames) == expected
    np.testing.assert_allclose([f.time_s for f in frames], np.array(expected) / 10.0, atol=1e-6)


def test_uniform_n_frames_within_clip(clip: Path) -> None:
    # Clip [0.5, 1.5) holds frames 5..14; 4 of them at linspace(0, 9, 4).round() = 0, 3, 6, 9.
    frames = list(iter_frames(clip, n_frames=4, start_s=0.5, end_s=1.5))
    assert _indices(frames) == [5, 8, 11, 14]


def test_resize(clip: Path) -> None:
    frames = list(iter_frames(clip, size=(32, 24), n_frames=3))
    assert [f.rgb.shape for f in frames] == [(24, 32, 3)] * 3


def test_clip_frames_after_seek_match_full_decode(long_gop_clip: Path) -> None:
    full = list(iter_frames(long_gop_clip))
    clipped = list(iter_frames(long_gop_clip, start_s=3.3, end_s=4.6))
    assert _indices(clipped) == list(range(33, 46))
    for frame in clipped:
        assert 3.3 - 1e-6 <= frame.time_s < 4.6
        assert frame.time_s == pytest.approx(frame.index / 10.0)
        np.testing.assert_array_equal(frame.rgb, full[frame.index].rgb)


def test_clip_fps_sampling_starts_at_clip(long_gop_clip: Path) -> None:
    frames = list(iter_frames(long_gop_clip, fps=2.0, start_s=2.05, end_s=4.0))
    assert _indices(frames) == [21, 26, 31, 36]


@pytest.mark.parametrize("kwargs", [
    {"fps": 5.0, "n_frames": 3},
    {"fps": 0.0},
    {"fps": float("nan")},
    {"n_frames": 0},
    {"size": (0, 10)},
    {"start_s": -1.0},
    {"start_s": 1.0, "end_s": 1.0},
])
def test_frame_argument_errors_raise_at_call(clip: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        iter_frames(clip, **kwargs)


# ------------------------------------------------------------------------------------------------ audio


def test_audio_tone(clip: Path) -> None:
    audio = decode_audio(clip, sample_rate=SR)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(audio.size - 2 * SR) <= AAC_SLACK
    middle = audio[SR // 4: -SR // 4]  # away from the codec's start/end transients
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    peak_hz = np.argmax(spectrum) * SR / middle.size
    assert peak_hz == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 48000])
def test_audio_sample_rates(clip: Path, sample_rate: int) -> None:
    assert abs(decode_audio(clip, sample_rate=sample_rate).size - 2 * sample_rate) <= AAC_SLACK


def test_audio_clip(long_gop_clip: Path) -> None:
    full = decode_audio(long_gop_clip, sample_rate=SR)
    clipped = decode_audio(long_gop_clip, sample_rate=SR, start_s=2.5, end_s=4.25)
    assert abs(clipped.size - round(1.75 * SR)) <= AAC_SLACK
    # Same samples as the slice of a whole-file decode (to a sub-sample resampling phase).
    start = round(2.5 * SR)
    np.testing.assert_allclose(clipped[1000:-1000], full[start + 1000: start + clipped.size - 1000],
                               atol=0.1)


def test_audio_clip_native_rate_is_exact(long_gop_clip: Path) -> None:
    full = decode_audio(long_gop_clip, sample_rate=44100)
    clipped = decode_audio(long_gop_clip, sample_rate=44100, start_s=2.5, end_s=4.25)
    start = round(2.5 * 44100)
    assert clipped.size == round(4.25 * 44100) - start
    np.testing.assert_allclose(clipped, full[start: start + clipped.size], atol=1e-4)


def test_iter_audio_chunks(clip: Path) -> None:
    chunks = list(iter_audio(clip, sample_rate=SR, chunk_s=0.25))
    assert [c.size for c in chunks[:-1]] == [SR // 4] * (len(chunks) - 1)
    assert 0 < chunks[-1].size <= SR // 4
    np.testing.assert_array_equal(np.concatenate(chunks), decode_audio(clip, sample_rate=SR))


@pytest.mark.parametrize("kwargs", [
    {"sample_rate": 0},
    {"sample_rate": SR, "start_s": 2.0, "end_s": 1.0},
    {"sample_rate": SR, "end_s": float("inf")},
])
def test_audio_argument_errors(clip: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        decode_audio(clip, **kwargs)


# -------------------------------------------------------------------------------------------- streaming


def test_long_video_streams_one_frame_at_a_time(tmp_path: Path) -> None:
    """A 60 s clip is decoded lazily in bounded memory.

    Two checks: the generator keeps no reference to RGB arrays it yielded (weak references die), and
    resident memory stays flat (decoded frames live in FFmpeg buffers, which tracemalloc cannot see,
    so RSS is measured instead). All 600 frames held would be ~138 MB of RGB, or ~69 MB of YUV.
    """
    psutil = pytest.importorskip("psutil")
    path = write_test_clip(tmp_path / "long.mp4", duration_s=60.0, fps=10.0, size=(320, 240), audio=False)
    assert inspect.isgenerator(iter_frames(path))
    process = psutil.Process()
    baseline = process.memory_info().rss
    growth = 0
    alive: list[weakref.ref[np.ndarray[Any, Any]]] = []
    count = 0
    for frame in iter_frames(path):
        alive.append(weakref.ref(frame.rgb))
        count += 1
        del frame
        if count % 50 == 0:
            gc.collect()
            # Only the array just yielded may still be referenced (by the generator's locals).
            assert sum(ref() is not None for ref in alive) <= 2
            growth = max(growth, process.memory_info().rss - baseline)
    assert count == 600
    assert growth < 40 * 2**20


def test_iter_audio_is_lazy(clip: Path) -> None:
    assert inspect.isgenerator(iter_audio(clip, sample_rate=SR))


# ------------------------------------------------------------------------------------------- bad media


def _assert_bad(fn: Callable[[], object], path: Path, cause: str | None = None) -> BadMediaError:
    with pytest.raises(BadMediaError, match=re.escape(str(path))) as info:
        fn()
    if cause is not None:
        assert re.search(cause, str(info.value)), str(info.value)
    return info.value


ALL_READERS: list[tuple[str, Callable[[Path], object]]] = [
    ("probe", probe),
    ("iter_frames", lambda p: list(iter_frames(p))),
    ("decode_audio", lambda p: decode_audio(p, sample_rate=SR)),
]


@pytest.mark.parametrize(("name", "reader"), ALL_READERS, ids=[n for n, _ in ALL_READERS])
def test_missing_file(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> None:
    path = tmp_path / "nope.mp4"
    _assert_bad(lambda: reader(path), path, "not found")


def test_missing_file_raises_when_iter_frames_is_called(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    _assert_bad(lambda: iter_frames(path), path, "not found")


@pytest.mark.parametrize(("name", "reader"), ALL_READERS, ids=[n for n, _ in ALL_READERS])
def test_empty_file(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    _assert_bad(lambda: reader(path), path, "empty")


@pytest.mark.parametrize(("name", "reader"), ALL_READERS, ids=[n for n, _ in ALL_READERS])
def test_text_file_named_mp4(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 20)
    err = _assert_bad(lambda: reader(path), path, "not a readable media file")
    assert isinstance(err.__cause__, av.error.FFmpegError)


def test_directory(tmp_path: Path) -> None:
    _assert_bad(lambda: probe(tmp_path), tmp_path, "directory")


@pytest.mark.parametrize(("name", "reader"), ALL_READERS[1:], ids=[n for n, _ in ALL_READERS[1:]])
def test_truncated_mp4_index_first(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> None:
    """Index at the front (faststart, like web video): opens, then fails while decoding."""
    src = write_test_clip(tmp_path / "full.mp4", duration_s=3.0, fps=25.0, size=(160, 120))
    path = truncate(src, tmp_path / "cut.mp4", keep=0.3)
    _assert_bad(lambda: reader(path), path, "truncated")


@pytest.mark.parametrize(("name", "reader"), ALL_READERS, ids=[n for n, _ in ALL_READERS])
def test_truncated_mp4_index_last(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> None:
    """Index at the end (as a camera writes it): the cut file cannot even be opened."""
    src = write_test_clip(tmp_path / "full.mp4", duration_s=3.0, fps=25.0, size=(160, 120))
    recorded = remux(src, tmp_path / "recorded.mp4", faststart=False)
    path = truncate(recorded, tmp_path / "cut.mp4", keep=0.3)
    err = _assert_bad(lambda: reader(path), path, "truncated")
    assert isinstance(err.__cause__, av.error.FFmpegError)


def test_video_without_audio(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "silent.mp4", audio=False)
    _assert_bad(lambda: decode_audio(path, sample_rate=SR), path, "no audio stream")
    _assert_bad(lambda: list(iter_audio(path, sample_rate=SR)), path, "no audio stream")


def test_audio_only_file(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "voice.mp4", video=False)
    _assert_bad(lambda: list(iter_frames(path)), path, "no video stream")
    _assert_bad(lambda: list(iter_frames(path, n_frames=3)), path, "no video stream")


@pytest.mark.parametrize(("start_s", "end_s"), [(5.0, None), (2.5, 3.0), (None, 10.0), (1.0, 9.0)])
def test_clip_outside_file(clip: Path, start_s: float | None, end_s: float | None) -> None:
    _assert_bad(lambda: list(iter_frames(clip, start_s=start_s, end_s=end_s)), clip, "only 2.000 s long")
    _assert_bad(lambda: decode_audio(clip, sample_rate=SR, start_s=start_s, end_s=end_s), clip,
                "only 2.000 s long")


def test_clip_end_slightly_past_file_end_is_tolerated(clip: Path) -> None:
    assert len(list(iter_frames(clip, start_s=1.5, end_s=2.2))) == 5
    assert abs(decode_audio(clip, sample_rate=SR, start_s=1.5, end_s=2.2).size - SR // 2) <= AAC_SLACK
