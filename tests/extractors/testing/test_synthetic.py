"""Tests of affectcache.extractors.testing.synthetic: clip writing, and the demo corpus' planted signal,
determinism and idempotence."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from affectcache.extractors.core.provenance import sha256_file
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.media.probe import probe
from affectcache.extractors.media.video import iter_frames
from affectcache.extractors.testing.synthetic import (
    DemoClip,
    generate_demo_corpus,
    write_clip,
    write_test_clip,
)

if TYPE_CHECKING:
    from pathlib import Path

SR = 16000
SMALL_SIZE = (160, 120)
SMALL_MIN_S, SMALL_MAX_S = 6.0, 9.0
SMALL: dict[str, Any] = {"n_clips": 3, "seed": 7, "fps": 25.0, "size": SMALL_SIZE,
                         "min_duration_s": SMALL_MIN_S, "max_duration_s": SMALL_MAX_S}
"""A corpus small enough to generate in about a second."""
TINY: dict[str, Any] = {**SMALL, "size": (32, 24), "min_duration_s": 0.5, "max_duration_s": 1.0}
"""Even smaller, for tests that regenerate corpora."""


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path) -> list[DemoClip]:
    return generate_demo_corpus(corpus_dir, **SMALL)


def _per_second(values: npt.NDArray[np.float64], fps: float, n_seconds: int) -> npt.NDArray[np.float64]:
    step = round(fps)
    return np.array([values[i * step:(i + 1) * step].mean() for i in range(n_seconds)])


def _pearson(a: list[float] | npt.NDArray[np.float64], b: list[float] | npt.NDArray[np.float64]) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


def _f0(frame: npt.NDArray[np.float32], sample_rate: int) -> float:
    """Fundamental frequency (80-400 Hz) by autocorrelation."""
    x = frame - frame.mean()
    ac = np.correlate(x, x, mode="full")[x.size - 1:]
    lo, hi = sample_rate // 400, sample_rate // 80
    return sample_rate / (lo + int(np.argmax(ac[lo:hi])))


# ---------------------------------------------------------------------------------------- write_clip


def test_write_test_clip_streams(tmp_path: Path) -> None:
    both = probe(write_test_clip(tmp_path / "both.mp4"))
    assert (both.has_video, both.has_audio, both.fps, both.n_frames) == (True, True, 10.0, 10)
    assert not probe(write_test_clip(tmp_path / "v.mp4", audio=False)).has_audio
    assert not probe(write_test_clip(tmp_path / "a.mp4", video=False)).has_video


def test_write_clip_calls_functions_with_index_and_times(tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    def frame_fn(i: int, t: float) -> npt.NDArray[np.uint8]:
        seen.append((i, t))
        return np.full((24, 32, 3), 10 * i, dtype=np.uint8)

    path = write_clip(tmp_path / "c.mp4", duration_s=0.5, fps=20.0, size=(32, 24), frame_fn=frame_fn)
    assert seen == [(i, i / 20.0) for i in range(10)]
    means = [f.rgb.mean() for f in iter_frames(path)]
    np.testing.assert_allclose(means, 10 * np.arange(10), atol=3)  # H.264 is lossy


def test_write_clip_audio_function(tmp_path: Path) -> None:
    def square_wave(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 0.25 * np.sign(np.sin(2 * np.pi * 200 * t))

    path = write_clip(tmp_path / "a.mp4", duration_s=2.5, audio_fn=square_wave, sample_rate=22050)
    info = probe(path)
    assert (info.has_video, info.has_audio, info.audio_sample_rate) == (False, True, 22050)
    audio = decode_audio(path, sample_rate=SR)
    assert abs(audio.size - 2.5 * SR) <= 2048
    assert np.sqrt(np.mean(audio[SR:-SR] ** 2)) == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "frame_fn, an audio_fn"),
    ({"frame_fn": lambda i, t: np.zeros((4, 4, 3), np.uint8), "size": (5, 4)}, "even"),
    ({"frame_fn": lambda i, t: np.zeros((4, 4, 3), np.float32), "size": (4, 4)}, "uint8"),
    ({"frame_fn": lambda i, t: np.zeros((4, 6, 3), np.uint8), "size": (4, 4)}, r"\(4, 4, 3\)"),
    ({"audio_fn": lambda t: np.zeros(3)}, "audio_fn returned shape"),
])
def test_write_clip_rejects_bad_input_and_leaves_no_file(tmp_path: Path, kwargs: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_clip(tmp_path / "bad.mp4", duration_s=0.5, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- demo corpus


def test_corpus_layout(corpus: list[DemoClip], corpus_dir: Path) -> None:
    assert [c.video_id for c in corpus] == ["demo_000", "demo_001", "demo_002"]
    assert [c.split for c in corpus] == ["train", "train", "test"]
    for clip in corpus:
        assert clip.path == corpus_dir / f"{clip.video_id}.mp4"
        assert SMALL_MIN_S - 0.04 <= clip.duration_s <= SMALL_MAX_S + 0.04
        assert clip.n_frames == round(clip.duration_s * clip.fps)
        info = probe(clip.path)
        assert info.n_frames == clip.n_frames
        assert info.fps == pytest.approx(clip.fps)
        assert (info.width, info.height) == SMALL_SIZE
        for labels in (clip.valence, clip.arousal):
            assert labels.shape == (clip.n_frames,)
            assert labels.dtype == np.float64
            assert np.all(np.abs(labels) <= 1.0)
            assert np.ptp(labels) > 0.3  # the curve actually moves within a clip ...
            assert np.max(np.abs(np.diff(labels))) * clip.fps < 4.0  # ... smoothly (units per second)
        stored = np.load(corpus_dir / f"{clip.video_id}.npz")
        np.testing.assert_array_equal(stored["valence"], clip.valence)
        np.testing.assert_array_equal(stored["time_s"], clip.time_s)
    assert not np.allclose(corpus[0].valence[:100], corpus[1].valence[:100])
    manifest = json.loads((corpus_dir / "corpus.json").read_text())
    assert manifest["params"]["seed"] == SMALL["seed"]
    assert [e["file_sha256"] for e in manifest["clips"]] == [sha256_file(c.path) for c in corpus]


def test_twelve_clip_splits(tmp_path: Path) -> None:
    clips = generate_demo_corpus(tmp_path, n_clips=12, size=(32, 24), min_duration_s=0.2,
                                 max_duration_s=0.4)
    assert [c.video_id for c in clips] == [f"demo_{i:03d}" for i in range(12)]
    assert [c.split for c in clips] == ["train"] * 8 + ["val"] * 2 + ["test"] * 2


def test_planted_audio_loudness_tracks_arousal(corpus: list[DemoClip]) -> None:
    for clip in corpus:
        audio = decode_audio(clip.path, sample_rate=SR)
        n = int(clip.duration_s)
        rms = [np.sqrt(np.mean(audio[i * SR:(i + 1) * SR] ** 2)) for i in range(n)]
        assert _pearson(rms, _per_second(clip.arousal, clip.fps, n)) > 0.7, clip.video_id


def test_planted_audio_pitch_tracks_arousal(corpus: list[DemoClip]) -> None:
    clip = max(corpus, key=lambda c: c.duration_s)
    audio = decode_audio(clip.path, sample_rate=SR)
    half = SR // 2
    n = int(clip.duration_s * 2)
    # A 50 ms window in the middle of each half second, where the syllable envelope barely matters.
    f0 = [_f0(audio[i * half + half // 2: i * half + half // 2 + 800], SR) for i in range(n)]
    arousal = [clip.arousal[round((i + 0.5) * clip.fps / 2)] for i in range(n)]
    assert min(f0) >= 100
    assert max(f0) <= 320
    assert _pearson(f0, arousal) > 0.7


def test_planted_video_colour_tracks_valence(corpus: list[DemoClip]) -> None:
    for clip in corpus:
        frames = list(iter_frames(clip.path, fps=4.0))
        valence = clip.valence[[f.index for f in frames]]
        brightness = [f.rgb.mean() for f in frames]
        warmth = [f.rgb[..., 0].astype(float).mean() - f.rgb[..., 2].astype(float).mean() for f in frames]
        assert _pearson(brightness, valence) > 0.7, clip.video_id
        assert _pearson(warmth, valence) > 0.7, clip.video_id


def test_face_is_pasted_into_frames(corpus: list[DemoClip]) -> None:
    """The backdrop alone is smooth; the face photo adds strong local detail (edges) in every frame."""
    for frame in iter_frames(corpus[0].path, n_frames=5):
        grey = frame.rgb.astype(np.float32).mean(axis=2)
        edges = np.abs(np.diff(grey, axis=1))
        assert np.mean(edges > 20) > 0.01


def test_rerun_reuses_files(corpus: list[DemoClip], corpus_dir: Path) -> None:
    files = sorted(corpus_dir.iterdir())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = generate_demo_corpus(corpus_dir, **SMALL)
    assert sorted(corpus_dir.iterdir()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    for first, second in zip(corpus, again, strict=True):
        assert (first.video_id, first.path, first.split, first.n_frames) == (
            second.video_id, second.path, second.split, second.n_frames)
        np.testing.assert_array_equal(first.valence, second.valence)
        np.testing.assert_array_equal(first.arousal, second.arousal)


def test_damaged_clip_is_regenerated_alone(tmp_path: Path) -> None:
    clips = generate_demo_corpus(tmp_path, **TINY)
    digest = sha256_file(clips[1].path)
    clips[1].path.write_bytes(clips[1].path.read_bytes()[:100])
    untouched = {c.path: c.path.stat().st_mtime_ns for c in (clips[0], clips[2])}
    generate_demo_corpus(tmp_path, **TINY)
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert sha256_file(clips[1].path) == digest  # re-encoded identically (deterministic)


def test_changed_params_regenerate_and_drop_stale_clips(tmp_path: Path) -> None:
    first = generate_demo_corpus(tmp_path, **TINY)
    second = generate_demo_corpus(tmp_path, **{**TINY, "seed": 8, "n_clips": 2})
    assert len(second) == 2
    assert not np.array_equal(first[0].valence, second[0].valence)
    assert not first[2].path.exists()
    assert not (tmp_path / "demo_002.npz").exists()
    assert json.loads((tmp_path / "corpus.json").read_text())["params"]["seed"] == 8


def test_deterministic_from_seed(corpus: list[DemoClip], tmp_path: Path) -> None:
    other = generate_demo_corpus(tmp_path, **SMALL)
    for a, b in zip(corpus, other, strict=True):
        assert a.n_frames == b.n_frames
        np.testing.assert_array_equal(a.valence, b.valence)
        np.testing.assert_array_equal(a.arousal, b.arousal)
        # Single-threaded x264 and the AAC encoder are deterministic: byte-identical files.
        assert sha256_file(a.path) == sha256_file(b.path)


def test_missing_scikit_image_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"affectcache\[demo\]"):
        generate_demo_corpus(tmp_path, n_clips=1, size=(32, 24), min_duration_s=0.2, max_duration_s=0.2)
