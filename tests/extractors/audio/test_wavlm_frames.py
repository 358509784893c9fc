"""Tests of ``wavlm-frames``: frame keys, agreement with a direct WavLM forward, centre-rule stitching,
batch invariance and silence masks (tiny random WavLM, offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.audio.wavlm_frames import WavLMFramesConfig, WavLMFramesExtractor, centre_bounds
from affectcache.extractors.common.audio_windows import zero_mean_unit_var
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.testing.audio_standins import tiny_wavlm
from affectcache.extractors.testing.synthetic import write_clip

if TYPE_CHECKING:
    from pathlib import Path

SR = 16000
STRIDE = 320  # 20 ms frames of the WavLM feature encoder


def _modulated_tone(t: np.ndarray) -> np.ndarray:
    # Loud before 2 s, quiet after: windows 0 = [0, 4) s and 1 = [2, 6) s see different inputs.
    return np.where(t < 2.0, 0.8, 0.1) * np.sin(2 * np.pi * (300 + 40 * t) * t)


def _with_gap(t: np.ndarray) -> np.ndarray:
    # Digital silence in [1.0, 2.0) s, a tone elsewhere.
    return np.where((t >= 1.0) & (t < 2.0), 0.0, 0.4 * np.sin(2 * np.pi * 440 * t))


@pytest.fixture(scope="session")
def frames_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wavlm_frames")
    return {
        "model": tiny_wavlm(root / "tiny-wavlm"),
        "long": write_clip(root / "long.mp4", duration_s=10.0, audio_fn=_modulated_tone, sample_rate=SR),
        "short": write_clip(root / "short.mp4", duration_s=2.5, audio_fn=_modulated_tone, sample_rate=SR),
        "gap": write_clip(root / "gap.mp4", duration_s=3.0, audio_fn=_with_gap, sample_rate=SR),
    }


def _extractor(env: dict[str, Path], **fields: Any) -> WavLMFramesExtractor:
    return WavLMFramesExtractor(WavLMFramesConfig.from_dict({"model": str(env["model"]), **fields}))


def _direct_states(ext: WavLMFramesExtractor, wave: np.ndarray, layer: int) -> np.ndarray:
    """Hidden states of ``layer`` from calling the HF model directly on the normalised, 4 s-padded wave."""
    import torch

    model = ext.model.model
    padded = np.zeros(round(ext.config.window_s * SR), dtype=np.float32)
    padded[: len(wave)] = zero_mean_unit_var(wave)
    mask = np.zeros_like(padded, dtype=np.int64)
    mask[: len(wave)] = 1
    with torch.inference_mode():
        out = model(torch.from_numpy(padded)[None], attention_mask=torch.from_numpy(mask)[None],
                    output_hidden_states=True)
    states = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    return np.asarray(states[0].float().numpy())


def _item(env: dict[str, Path], key: str) -> MediaItem:
    return MediaItem(video_id=key, path=str(env[key]))


def test_frames_are_contiguous_and_timed_at_frame_starts(frames_env: dict[str, Path]) -> None:
    feats = _extractor(frames_env).extract(_item(frames_env, "long"))
    assert feats.kind == "frame"
    assert feats.frame is not None
    assert feats.time_s is not None
    np.testing.assert_array_equal(feats.frame, np.arange(feats.n_rows))
    np.testing.assert_allclose(feats.time_s, 0.02 * feats.frame, atol=1e-9)
    # 10 s = 500 frames; the 400-sample receptive field loses at most one or two at the end.
    assert 497 <= feats.n_rows <= 500
    assert feats.values.dtype == np.float16
    assert feats.values.shape[1] == 32  # one layer of the tiny model's hidden width


def test_short_audio_equals_direct_model_forward(frames_env: dict[str, Path]) -> None:
    for layer in (-1, 1):
        ext = _extractor(frames_env, layers=[layer])
        feats = ext.extract(_item(frames_env, "short"))
        wave = decode_audio(str(frames_env["short"]), sample_rate=SR)
        expected = _direct_states(ext, wave, layer)[: feats.n_rows]
        n_valid = (len(wave) - 400) // STRIDE + 1
        assert feats.n_rows == n_valid
        np.testing.assert_allclose(feats.values.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_stitching_takes_each_frame_from_its_central_window(frames_env: dict[str, Path]) -> None:
    # float32 output: the tiny random model's states differ little between windows (~5e-3), so the check
    # needs a tolerance below that; float16 rounding (~1e-3) would blur it.
    ext = _extractor(frames_env, layers=[-1, 1], output_dtype="float32")
    feats = ext.extract(_item(frames_env, "long"))
    wave = decode_audio(str(frames_env["long"]), sample_rate=SR)
    win, hop = 4 * SR, 2 * SR
    lo, hi = centre_bounds(1, 4, window=win, hop=hop)
    assert (lo, hi) == (3 * SR, 5 * SR)
    first, last = int(lo) // STRIDE, int(hi) // STRIDE  # frames 150..249 come from window 1 = [2 s, 6 s)
    own = np.concatenate([_direct_states(ext, wave[hop: hop + win], layer) for layer in (-1, 1)], axis=1)
    got = feats.values[first:last].astype(np.float32)
    np.testing.assert_allclose(got, own[first - hop // STRIDE: last - hop // STRIDE], rtol=0, atol=1e-4)
    # The frames just before come from window 0 = [0 s, 4 s): they equal its forward, whose states differ
    # from window 1's there (other normalisation and context).
    zero = np.concatenate([_direct_states(ext, wave[:win], layer) for layer in (-1, 1)], axis=1)
    before = feats.values[first - 10: first].astype(np.float32)
    np.testing.assert_allclose(before, zero[first - 10: first], rtol=0, atol=1e-4)
    other = own[first - 10 - hop // STRIDE: first - hop // STRIDE]
    assert np.abs(zero[first - 10: first] - other).max() > 1e-3


def test_results_do_not_depend_on_batch_composition(frames_env: dict[str, Path]) -> None:
    items = [_item(frames_env, k) for k in ("long", "short", "gap")]
    together = _extractor(frames_env, batch_size=5, output_dtype="float32").extract_batch(items)
    alone = [_extractor(frames_env, batch_size=1, output_dtype="float32").extract(it) for it in items]
    for a, b in zip(together, alone, strict=True):
        assert a.allclose(b, rtol=1e-4, atol=1e-4), a.video_id


def test_silent_frames_are_masked(frames_env: dict[str, Path]) -> None:
    feats = _extractor(frames_env).extract(_item(frames_env, "gap"))
    assert feats.mask is not None
    assert feats.time_s is not None
    inside = (feats.time_s >= 1.1) & (feats.time_s < 1.9)
    outside = (feats.time_s < 0.9) | (feats.time_s >= 2.1)
    assert inside.sum() >= 35
    assert not feats.mask[inside].any()
    assert feats.mask[outside].all()


def test_demo_config_uses_the_tiny_wavlm_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo's ras-audio head trains on wavlm-frames: the stand-in is the one ``wavlm`` uses.
    monkeypatch.delenv("AFFECTCACHE_DEMO_WAVLM_FRAMES_MODEL", raising=False)
    config = WavLMFramesExtractor.demo_config(tmp_path)
    assert config.model == str(tmp_path / "tiny-wavlm")
    assert config.output_dtype == "float16"
