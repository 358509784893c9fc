"""mfcc: agreement with librosa, edge-case audio, clips, missing audio."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import BadMediaError, MediaItem
from affectcache.extractors.audio.mfcc import MFCCConfig, MFCCExtractor
from affectcache.extractors.testing.synthetic import write_clip

if TYPE_CHECKING:
    from pathlib import Path

SR = 16000


def _waves() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * SR)) / SR
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 900 * t**2))
    return {"chirp": chirp.astype(np.float32),
            "noise": (0.1 * rng.standard_normal(t.size)).astype(np.float32),
            "speechlike": (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t))
                           ).astype(np.float32)}


@pytest.mark.parametrize("name", ["chirp", "noise", "speechlike"])
def test_matches_librosa(name: str) -> None:
    librosa = pytest.importorskip("librosa")
    wave = _waves()[name]
    cfg = MFCCConfig()
    ours = MFCCExtractor(cfg).compute([wave])[0][0]
    ref = librosa.feature.mfcc(y=wave, sr=SR, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.f_min, center=True,
                               pad_mode="constant").T  # librosa floors at top_db=80 like our default
    assert ours.shape == ref.shape
    # Stated tolerance: 1e-5 of the coefficient range (float32 FFT vs librosa's float64 path;
    # measured about 7e-7).
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, atol=1e-5 * scale, rtol=0)
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99999


@pytest.mark.parametrize("signal", ["silence", "dc", "clipped", "tiny"])
def test_degenerate_audio_is_finite_and_masked(signal: str) -> None:
    n = int(0.8 * SR)
    wave = {"silence": np.zeros(n), "dc": np.full(n, 0.4), "clipped": np.clip(
        3 * np.sin(np.arange(n) / 5.0), -1, 1), "tiny": np.zeros(int(0.05 * SR))}[signal].astype(np.float32)
    mfcc, level = MFCCExtractor().compute([wave])
    assert np.isfinite(mfcc[0]).all()
    assert mfcc[0].shape == (1 + wave.size // 160, 15)
    mask = level[0] >= MFCCConfig().silence_db
    if signal in ("silence", "tiny"):
        assert not mask.any()
    else:
        assert mask[5:-5].all()


def test_batching_and_block_size_do_not_change_results() -> None:
    waves = list(_waves().values())
    whole = MFCCExtractor(MFCCConfig(batch_size=100_000)).compute(waves)[0]
    small = MFCCExtractor(MFCCConfig(batch_size=7)).compute(waves)[0]
    alone = [MFCCExtractor().compute([w])[0][0] for w in waves]
    for a, b, c in zip(whole, small, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
        np.testing.assert_allclose(a, c, atol=1e-4)


def test_extract_from_media_rows_and_times(media_dir: Path) -> None:
    feats = MFCCExtractor().extract(MediaItem(video_id="b", path=str(media_dir / "b.mp4")))
    assert feats.kind == "frame"
    assert abs(feats.n_rows - 201) <= 3  # 2 s at 100 rows/s (+1 centred frame, AAC padding)
    assert feats.time_s is not None
    np.testing.assert_allclose(np.diff(feats.time_s), 0.01)
    assert feats.mask is not None
    assert feats.mask[10:-10].all()
    clip = MFCCExtractor().extract(MediaItem(video_id="b1", path=str(media_dir / "b.mp4"),
                                             start_s=0.5, end_s=1.5))
    assert abs(clip.n_rows - 101) <= 2
    assert clip.attrs["offset_s"] == 0.5


def test_no_audio_track_is_bad_media(media_dir: Path) -> None:
    with pytest.raises(BadMediaError, match=r"silent_video\.mp4"):
        MFCCExtractor().extract(MediaItem(video_id="s", path=str(media_dir / "silent_video.mp4")))


@pytest.mark.parametrize("name", ["empty.mp4", "text.mp4", "truncated.mp4", "nonexistent.mp4"])
def test_broken_files_are_bad_media(media_dir: Path, name: str) -> None:
    with pytest.raises(BadMediaError, match=re.escape(name)):
        MFCCExtractor().extract(MediaItem(video_id="x", path=str(media_dir / name)))


def test_real_speech_like_clip_round_trip(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "tone.mp4", duration_s=1.0, frame_fn=None,
                      audio_fn=lambda t: 0.5 * np.sin(2 * np.pi * 440 * t), sample_rate=44100)
    feats = MFCCExtractor().extract(MediaItem(video_id="tone", path=str(path)))
    assert np.isfinite(feats.values).all()
    assert feats.values.shape[1] == 15
