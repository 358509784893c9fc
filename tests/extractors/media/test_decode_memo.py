"""Shared decoding: one decode per item for every declared rate and sampling, outputs unchanged."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from affectcache.extractors import BadMediaError
from affectcache.extractors.media import audio as media_audio
from affectcache.extractors.media import video as media_video
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.media.decode_memo import (
    DecodeMemo,
    FrameSampling,
    MediaNeeds,
    combined_needs,
    current_memo,
    shared_decoding,
)
from affectcache.extractors.media.video import iter_frames
from tests.media_fixtures import truncate

if TYPE_CHECKING:
    from pathlib import Path

RATES = (16000, 44100, 48000)
SAMPLINGS = (FrameSampling(fps=2.0), FrameSampling(fps=7.0), FrameSampling(n_frames=5), FrameSampling())
CLIPS: tuple[tuple[float | None, float | None], ...] = ((None, None), (0.5, 1.5))


def _count(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    media = media_audio if name == "_audio_pass" else media_video
    real = getattr(media, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(media, name, counting)
    return calls


def _frames(path: Path, sampling: FrameSampling, size: tuple[int, int] | None,
            clip: tuple[float | None, float | None]) -> list[tuple[int, float, bytes]]:
    return [(vf.index, vf.time_s, vf.rgb.tobytes())
            for vf in iter_frames(path, fps=sampling.fps, n_frames=sampling.n_frames, size=size,
                                  start_s=clip[0], end_s=clip[1])]


@pytest.mark.parametrize("clip", CLIPS)
def test_one_audio_decode_serves_every_rate_with_lone_call_samples(
        media_dir: Path, monkeypatch: pytest.MonkeyPatch, clip: tuple[float | None, float | None]) -> None:
    path = media_dir / "b.mp4"
    alone = {rate: decode_audio(path, sample_rate=rate, start_s=clip[0], end_s=clip[1]) for rate in RATES}
    passes = _count(monkeypatch, "_audio_pass")
    with shared_decoding(MediaNeeds(audio_rates=frozenset(RATES))) as memo:
        for rate in (48000, 16000, 44100, 16000):
            together = decode_audio(path, sample_rate=rate, start_s=clip[0], end_s=clip[1])
            np.testing.assert_array_equal(together, alone[rate])
            together[:] = 0  # callers own their copy: the kept samples are untouched
        np.testing.assert_array_equal(decode_audio(path, sample_rate=16000, start_s=clip[0], end_s=clip[1]),
                                      alone[16000])
    assert [sorted(args[1]) for args in passes] == [sorted(RATES)]
    assert memo.stats.decodes == 1
    assert memo.stats.hits == 4


@pytest.mark.parametrize("clip", CLIPS)
def test_one_video_pass_serves_every_sampling_with_lone_call_frames(
        media_dir: Path, monkeypatch: pytest.MonkeyPatch, clip: tuple[float | None, float | None]) -> None:
    path = media_dir / "b.mp4"
    sizes = (None, (32, 24))
    alone = {(s, size): _frames(path, s, size, clip) for s in SAMPLINGS for size in sizes}
    passes = _count(monkeypatch, "_video_source")
    with shared_decoding(MediaNeeds(frame_samplings=frozenset(SAMPLINGS))) as memo:
        for sampling in reversed(SAMPLINGS):
            for size in sizes:
                assert _frames(path, sampling, size, clip) == alone[(sampling, size)], (sampling, size)
        undeclared = FrameSampling(fps=3.0)  # not declared: decoded on its own, still kept for reuse
        assert _frames(path, undeclared, None, clip) == _frames(path, undeclared, None, clip)
    assert len(passes) == 2  # one for the declared samplings, one for the undeclared one
    assert memo.stats.decodes == 2
    assert memo.used_bytes > 0


def test_needs_per_file_keep_only_what_that_file_needs(media_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    b, c = media_dir / "b.mp4", media_dir / "c.mp4"
    two = FrameSampling(fps=2.0), FrameSampling(fps=7.0)
    passes = _count(monkeypatch, "_video_source")
    with shared_decoding({str(b): MediaNeeds(frame_samplings=frozenset(two))}) as memo:
        for path in (b, c):
            for sampling in two:
                assert _frames(path, sampling, None, (None, None))
        assert memo.needs_for(str(c)) == MediaNeeds()
    assert sorted(str(args[0]) for args in passes) == sorted([str(b), str(c), str(c)])


def test_frames_over_the_budget_stream_unchanged(media_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = media_dir / "b.mp4"
    alone = {s: _frames(path, s, None, (None, None)) for s in SAMPLINGS}
    passes = _count(monkeypatch, "_video_source")
    with shared_decoding(MediaNeeds(frame_samplings=frozenset(SAMPLINGS)), budget_mb=0) as memo:
        for sampling in SAMPLINGS:
            assert _frames(path, sampling, None, (None, None)) == alone[sampling]
    assert memo.stats.dropped == 1
    assert memo.used_bytes == 0
    # The first request: a shared pass abandoned at the first frame, then its own streamed pass; the file
    # is then known not to fit, so every later request streams straight away.
    assert len(passes) == 1 + len(SAMPLINGS)


def test_a_consumer_stopping_early_keeps_the_memo_usable(media_dir: Path) -> None:
    path = media_dir / "b.mp4"
    sampling = FrameSampling(fps=5.0)
    with shared_decoding(MediaNeeds(frame_samplings=frozenset({sampling}))):
        first = next(iter_frames(path, fps=5.0))
        assert first.index == 0
        assert _frames(path, sampling, None, (None, None)) == _frames(path, sampling, None, (None, None))


def test_bad_media_is_decoded_once_and_raised_for_every_request(media_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from affectcache.extractors.testing.synthetic import write_test_clip

    # Index first (as write_test_clip writes it): the cut copy opens, then fails while decoding.
    broken = truncate(write_test_clip(tmp_path / "full.mp4", duration_s=3.0, fps=25.0, size=(160, 120)),
                      tmp_path / "broken.mp4", keep=0.3)
    with pytest.raises(BadMediaError) as alone_audio:
        decode_audio(broken, sample_rate=16000)
    with pytest.raises(BadMediaError) as alone_frames:
        list(iter_frames(broken, fps=5.0))
    audio_passes = _count(monkeypatch, "_audio_pass")
    video_passes = _count(monkeypatch, "_video_source")
    needs = MediaNeeds(audio_rates=frozenset({16000, 48000}),
                       frame_samplings=frozenset({FrameSampling(fps=5.0)}))
    with shared_decoding(needs):
        for _ in range(2):
            with pytest.raises(BadMediaError) as together:
                decode_audio(broken, sample_rate=16000)
            assert str(together.value) == str(alone_audio.value)
            with pytest.raises(BadMediaError) as together:
                list(iter_frames(broken, fps=5.0))
            assert str(together.value) == str(alone_frames.value)
        with pytest.raises(BadMediaError):
            decode_audio(broken, sample_rate=48000)
    assert len(audio_passes) == 1
    assert len(video_passes) == 1


def test_threads_wait_for_a_decode_in_progress_instead_of_repeating_it(
        media_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextvars

    path = media_dir / "b.mp4"
    sampling = FrameSampling(fps=5.0)
    expected = _frames(path, sampling, None, (None, None))
    passes = _count(monkeypatch, "_video_source")
    results: list[list[tuple[int, float, bytes]]] = []

    def request() -> None:
        results.append(_frames(path, sampling, None, (None, None)))

    with shared_decoding(MediaNeeds(frame_samplings=frozenset({sampling}))) as memo:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(request,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [expected] * 4
    assert len(passes) == 1
    assert memo.stats.decodes == 1
    assert memo.stats.hits == 3


def test_memo_is_scoped_to_the_block() -> None:
    assert current_memo() is None
    with shared_decoding() as memo:
        assert current_memo() is memo
    assert current_memo() is None
    with pytest.raises(ValueError, match="budget_mb"):
        DecodeMemo(budget_mb=-1)
    a = MediaNeeds(audio_rates=frozenset({16000}))
    b = MediaNeeds(frame_samplings=frozenset({FrameSampling(fps=1.0)}), audio_rates=frozenset({48000}))
    assert combined_needs([a, b]) == MediaNeeds(audio_rates=frozenset({16000, 48000}),
                                                frame_samplings=b.frame_samplings)
