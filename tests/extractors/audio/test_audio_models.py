"""Audio-model extractors (wavlm, wav2vec2-emotion, clap-audio, ast) on tiny random models.

Windows and chunk times, silence masks on degenerate audio, batch-composition invariance, equality with
calling the Hugging Face model directly on the same waveform, and prefixed checkpoints.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from affectcache.extractors import BadMediaError, ConfigError, MediaItem
from affectcache.extractors.audio.ast import ASTConfig, ASTExtractor
from affectcache.extractors.audio.clap_audio import ClapAudioConfig, ClapAudioExtractor
from affectcache.extractors.audio.wav2vec2_emotion import Wav2Vec2EmotionConfig, Wav2Vec2EmotionExtractor
from affectcache.extractors.audio.wavlm import WavLMConfig, WavLMExtractor
from affectcache.extractors.common.audio_windows import level_db, plan_windows, zero_mean_unit_var
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.testing.synthetic import write_clip
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from affectcache.extractors.core.base import Extractor

SR = 16000

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _tone(hz: float, amp: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: amp * np.sin(2 * np.pi * hz * t)


SIGNALS: dict[str, tuple[float, Callable[[np.ndarray], np.ndarray]]] = {
    "tone": (5.3, _tone(440.0)),
    "chirp": (2.5, lambda t: 0.5 * np.sin(2 * np.pi * (200 * t + 600 * t**2))),
    "noise": (2.2, lambda t: 0.2 * np.sin(t * 1e5) * np.cos(t * 7.3e4 + 1.0)),
    "silence": (2.5, lambda t: np.zeros_like(t)),
    "dc": (2.5, lambda t: np.full_like(t, 0.4)),
    "clipped": (2.5, lambda t: np.clip(3 * np.sin(2 * np.pi * 220 * t), -1, 1)),
    "short": (0.3, _tone(330.0)),
    "tone_then_silence": (5.0, lambda t: 0.5 * np.sin(2 * np.pi * 300 * t) * (t < 2.0)),
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio_clips")
    return {name: write_clip(root / f"{name}.mp4", duration_s=dur, frame_fn=None, audio_fn=fn, sample_rate=SR)
            for name, (dur, fn) in SIGNALS.items()}


def _item(clips: dict[str, Path], name: str, **kw: Any) -> MediaItem:
    return MediaItem(video_id=name, path=str(clips[name]), **kw)


def _extractors() -> dict[str, Callable[..., Extractor[Any]]]:
    return {
        "wavlm": lambda **kw: WavLMExtractor(WavLMConfig(model=tiny_model("wavlm"), **kw)),
        "wavlm-group": lambda **kw: WavLMExtractor(WavLMConfig(model=tiny_model("wavlm-group"), **kw)),
        "wav2vec2-emotion": lambda **kw: Wav2Vec2EmotionExtractor(
            Wav2Vec2EmotionConfig(model=tiny_model("wav2vec2-emotion"), **kw)),
        "clap": lambda **kw: ClapAudioExtractor(ClapAudioConfig(model=tiny_model("clap"), **kw)),
        "clap-fused-seq": lambda **kw: ClapAudioExtractor(
            ClapAudioConfig(model=tiny_model("clap-fused"), output="seq", **kw)),
        "ast": lambda **kw: ASTExtractor(ASTConfig(model=tiny_model("ast"), **kw)),
    }


# ------------------------------------------------------------------------------------------ windowing
@pytest.mark.parametrize(("duration_s", "window_s", "hop_s", "expected"), [
    (5.3, 4.0, 2.0, [(0.0, 4.0), (2.0, 5.3)]),
    (4.0, 4.0, 2.0, [(0.0, 4.0)]),
    (8.5, 4.0, 2.0, [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 8.5)]),
    (8.5, 4.0, 4.0, [(0.0, 4.0), (4.0, 8.0)]),  # last partial window 0.5 s < 1 s: dropped
    (0.3, 4.0, 2.0, [(0.0, 0.3)]),  # shorter than min_window_s: one window over the whole clip
])
def test_window_plan_follows_ras(duration_s: float, window_s: float, hop_s: float,
                                 expected: list[tuple[float, float]]) -> None:
    windows = plan_windows(round(duration_s * SR), SR, window_s=window_s, hop_s=hop_s, min_window_s=1.0)
    got = [bound for w in windows for bound in (w.start_s, w.end_s)]
    assert got == pytest.approx([bound for pair in expected for bound in pair])


def test_level_ignores_dc_and_normalisation_never_nans() -> None:
    assert level_db(np.full(1000, 0.4, np.float32)) < -100
    assert level_db(np.zeros(1000, np.float32)) < -100
    assert level_db(np.sin(np.arange(1000) / 3.0).astype(np.float32)) > -4
    assert np.isfinite(zero_mean_unit_var(np.full(50, 0.7, np.float32))).all()


# ---------------------------------------------------------------------------------------------- wavlm
def test_wavlm_chunk_rows_times_and_boundaries(clips: dict[str, Path]) -> None:
    feats = _extractors()["wavlm"]().extract(_item(clips, "tone_then_silence"))
    # 5 s -> windows [0,4) and [2,5); 4 chunks each; WavLM makes T=199 frames of 4 s: cuts 0,50,100,149,199.
    assert feats.n_rows == 8
    assert feats.values.shape == (8, 64)  # mean ‖ std of the 32-d states
    cuts = np.array([0, 50, 100, 149, 199]) / 199 * 4.0
    expected = sorted([(cuts[i], cuts[i + 1], 0, i) for i in range(4)]
                      + [(2 + cuts[i], min(2 + cuts[i + 1], 5.0), 1, i) for i in range(4)])
    assert feats.start_s is not None
    assert feats.end_s is not None
    np.testing.assert_allclose(feats.start_s, [e[0] for e in expected], atol=2e-3)
    np.testing.assert_allclose(feats.end_s, [e[1] for e in expected], atol=2e-3)
    assert feats.attrs["window_index"] == [e[2] for e in expected]
    assert feats.attrs["chunk_index"] == [e[3] for e in expected]
    # The tone stops at 2 s: chunks starting after it are silent.
    assert feats.mask is not None
    assert (feats.mask == (feats.start_s < 1.99)).all()


def _hf_wavlm_chunks(model_dir: str, wave: np.ndarray, n_chunks: int = 4) -> np.ndarray:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMModel

    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    inputs = fe(wave, sampling_rate=SR, padding="max_length", max_length=4 * SR, return_tensors="pt")
    model = WavLMModel.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        hidden = model(inputs["input_values"], attention_mask=inputs["attention_mask"]).last_hidden_state[0]
    t = hidden.shape[0]
    cuts = [round(i * t / n_chunks) for i in range(n_chunks + 1)]
    return np.stack([torch.cat([hidden[a:b].mean(0), hidden[a:b].std(0, unbiased=False)]).numpy()
                     for a, b in itertools.pairwise(cuts)])


def test_wavlm_equals_the_hf_model_called_directly(clips: dict[str, Path]) -> None:
    feats = _extractors()["wavlm"]().extract(_item(clips, "chirp"))
    wave = decode_audio(clips["chirp"], sample_rate=SR)
    first = np.asarray(feats.attrs["window_index"]) == 0  # window [0, 2.5) zero-padded to 4 s
    ours = feats.values[first]
    # The HF mean/std runs over all chunk frames: compare the chunks that lie fully inside the audio.
    ref = _hf_wavlm_chunks(tiny_model("wavlm"), wave)
    np.testing.assert_allclose(ours[:2], ref[:2], rtol=1e-4, atol=1e-4)


def test_wavlm_prefixed_checkpoint_loads_as_the_original(tmp_path: Path, clips: dict[str, Path]) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import WavLMModel

    from affectcache.extractors.testing.audio_standins import tiny_wavlm_config

    torch.manual_seed(123)
    donor = WavLMModel(tiny_wavlm_config())  # different weights than the saved tiny model
    tensors = {f"ssl_model.{k}": v.contiguous() for k, v in donor.state_dict().items()}
    tensors["pool.attention.weight"] = torch.ones(3, 3)  # a SER head's tensors are ignored
    ckpt = tmp_path / "ser.safetensors"
    save_file(tensors, str(ckpt))
    donor_dir = tmp_path / "donor"
    donor.save_pretrained(donor_dir)

    item = _item(clips, "chirp")
    via_prefix = WavLMExtractor(WavLMConfig(model=tiny_model("wavlm"), checkpoint=str(ckpt),
                                            state_dict_prefix="ssl_model.")).extract(item)
    direct = WavLMExtractor(WavLMConfig(model=str(donor_dir))).extract(item)
    base = _extractors()["wavlm"]().extract(item)
    assert via_prefix.allclose(direct, rtol=1e-5, atol=1e-5)
    assert not via_prefix.allclose(base, rtol=1e-3, atol=1e-3)
    prov = WavLMExtractor(WavLMConfig(model=tiny_model("wavlm"), checkpoint=str(ckpt),
                                      state_dict_prefix="ssl_model.")).model_info()
    assert prov["state_dict_prefix"] == "ssl_model."
    assert prov["sha256"] is not None

    wrong = WavLMExtractor(WavLMConfig(model=tiny_model("wavlm"), checkpoint=str(ckpt),
                                       state_dict_prefix="model."))
    with pytest.raises(ConfigError, match="no tensors under prefix"):
        wrong.extract(item)


def test_wavlm_layers_concatenate(clips: dict[str, Path]) -> None:
    feats = _extractors()["wavlm"](layers=(0, -1), pooling="mean").extract(_item(clips, "chirp"))
    assert feats.values.shape[1] == 64
    last = _extractors()["wavlm"](pooling="mean").extract(_item(clips, "chirp"))
    np.testing.assert_allclose(feats.values[:, 32:], last.values, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ other models
def test_wav2vec2_emotion_head_matches_manual_computation(clips: dict[str, Path]) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tiny_model("wav2vec2-emotion")
    feats = _extractors()["wav2vec2-emotion"](window_s=10.0, hop_s=10.0).extract(_item(clips, "chirp"))
    assert feats.n_rows == 1
    assert feats.attrs["columns"] == {"embedding": [0, 32], "arousal": 32, "dominance": 33, "valence": 34}
    # The published layout, computed by hand: mean over time of the last state -> dense -> tanh -> out_proj.
    tensors = load_file(f"{folder}/model.safetensors")
    encoder = Wav2Vec2Model(Wav2Vec2Config.from_pretrained(folder)).eval()
    prefix = "wav2vec2."
    encoder.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    wave = zero_mean_unit_var(decode_audio(clips["chirp"], sample_rate=SR))
    with torch.inference_mode():
        pooled = encoder(torch.from_numpy(wave)[None]).last_hidden_state.mean(1)[0]
        hidden = torch.tanh(pooled @ tensors["classifier.dense.weight"].T + tensors["classifier.dense.bias"])
        preds = hidden @ tensors["classifier.out_proj.weight"].T + tensors["classifier.out_proj.bias"]
    np.testing.assert_allclose(feats.values[0, :32], pooled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(feats.values[0, 32:], preds.numpy(), rtol=1e-4, atol=1e-4)


def test_clap_equals_get_audio_features(clips: dict[str, Path]) -> None:
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    folder = tiny_model("clap")
    feats = _extractors()["clap"](window_s=10.0, hop_s=10.0).extract(_item(clips, "chirp"))
    wave = decode_audio(clips["chirp"], sample_rate=48000)
    wave = wave / np.abs(wave).max()
    fe = ClapFeatureExtractor.from_pretrained(folder)
    inputs = fe(wave, sampling_rate=48000, truncation="rand_trunc", return_tensors="pt")
    with torch.inference_mode():
        ref = ClapModel.from_pretrained(folder).eval().get_audio_features(**inputs).pooler_output[0].numpy()
    assert feats.values.shape == (1, 16)
    np.testing.assert_allclose(feats.values[0], ref, rtol=1e-4, atol=1e-5)


def test_clap_seq_mode_shape_and_determinism(clips: dict[str, Path]) -> None:
    ext = _extractors()["clap-fused-seq"](batch_size=1)
    a = ext.extract(_item(clips, "tone"))
    assert a.values.ndim == 3
    assert a.values.shape[0] == 2
    assert a.values.shape[2] == 32  # hidden channels last
    assert a.attrs["truncation"] == "fusion"
    # transformers would flag a random window as "longer" on every call; we never do.
    assert a.allclose(ext.extract(_item(clips, "tone")), rtol=0, atol=0)


def test_ast_equals_the_hf_model_called_directly(clips: dict[str, Path]) -> None:
    import torch
    from transformers import ASTFeatureExtractor, ASTModel

    folder = tiny_model("ast")
    feats = _extractors()["ast"](window_s=10.24, hop_s=10.24).extract(_item(clips, "chirp"))
    wave = decode_audio(clips["chirp"], sample_rate=SR)
    inputs = ASTFeatureExtractor.from_pretrained(folder)(wave, sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        ref = ASTModel.from_pretrained(folder).eval()(**inputs).pooler_output[0].numpy()
    np.testing.assert_allclose(feats.values[0], ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------- shared behaviour
ALL = ["wavlm", "wavlm-group", "wav2vec2-emotion", "clap", "clap-fused-seq", "ast"]


@pytest.mark.parametrize("name", ALL)
def test_results_do_not_depend_on_batch_composition(name: str, clips: dict[str, Path]) -> None:
    items = [_item(clips, "tone"), _item(clips, "short"), _item(clips, "noise", start_s=0.4, end_s=1.9)]
    make = _extractors()[name]
    extra = {"pad_to_window": False} if name == "wavlm" else {}
    together = make(batch_size=8, **extra).extract_batch(items)
    # Reversed, in batches of one: every window meets different neighbours (or none).
    apart = make(batch_size=1, **extra).extract_batch(items[::-1])[::-1]
    for a, b in zip(together, apart, strict=True):
        assert a.allclose(b, rtol=1e-4, atol=1e-4), a.video_id


@pytest.mark.parametrize("name", ALL)
def test_degenerate_audio_is_finite_and_silence_masked(name: str, clips: dict[str, Path]) -> None:
    ext = _extractors()[name]()
    names = ["silence", "dc", "clipped", "short"]
    items = [*(_item(clips, n) for n in names), _item(clips, "tone", start_s=1.0, end_s=2.5)]
    results = {f.video_id + ("_clip" if i == len(names) else ""): f
               for i, f in enumerate(ext.extract_batch(items))}
    for feats in results.values():
        assert np.isfinite(feats.values).all()
        assert feats.mask is not None
    assert not results["silence"].mask.any()  # type: ignore[union-attr]
    assert not results["dc"].mask.any()  # type: ignore[union-attr]
    assert results["clipped"].mask.any()  # type: ignore[union-attr]
    assert results["short"].n_rows >= 1
    assert results["short"].mask.any()  # type: ignore[union-attr]
    clip = results["tone_clip"]
    assert clip.attrs["offset_s"] == 1.0
    assert clip.end_s is not None
    assert clip.end_s.max() == pytest.approx(1.5, abs=0.02)


def test_no_audio_track_is_bad_media(media_dir: Path) -> None:
    with pytest.raises(BadMediaError, match=r"silent_video\.mp4"):
        _extractors()["ast"]().extract(MediaItem(video_id="s", path=str(media_dir / "silent_video.mp4")))


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="window_s must be <= 10"):
        ClapAudioConfig(window_s=12.0).check()
    with pytest.raises(ConfigError, match=r"window_s must be <= 10\.24"):
        ASTConfig(window_s=11.0, hop_s=5.0).check()
    with pytest.raises(ConfigError, match="state_dict_prefix needs a checkpoint"):
        WavLMConfig(state_dict_prefix="ssl_model.").check()
    with pytest.raises(ConfigError, match="hop_s"):
        WavLMConfig(hop_s=5.0).check()
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        _extractors()["ast"](dtype="float16").model  # noqa: B018


def test_demo_configs_build_stand_ins_once_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFFECTCACHE_DEMO_AST_MODEL", raising=False)
    with caplog.at_level(logging.WARNING):
        cfg = ASTExtractor.demo_config(tmp_path)
    assert "RANDOM stand-in" in caplog.text
    model_file = tmp_path / "tiny-ast" / "config.json"
    assert cfg.model == str(tmp_path / "tiny-ast")
    assert model_file.exists()
    mtime = model_file.stat().st_mtime_ns
    ASTExtractor.demo_config(tmp_path)
    assert model_file.stat().st_mtime_ns == mtime  # reused, not rebuilt
    monkeypatch.setenv("AFFECTCACHE_DEMO_AST_MODEL", "/models/ast")
    assert ASTExtractor.demo_config(tmp_path).model == "/models/ast"


def test_build_writes_segments_to_the_store(clips: dict[str, Path], store_path: Path) -> None:
    from affectcache.store.runner import build
    from affectcache.store.zarr_store import FeatureStore

    cfg = WavLMConfig(model=tiny_model("wavlm"))
    report = build("wavlm", [_item(clips, "tone"), _item(clips, "short")], store_path, config=cfg, workers=0)
    assert report.ok
    stored = FeatureStore(store_path).read("wavlm", "tone")
    assert stored.kind == "segment"
    assert stored.values.shape == (8, 64)
    assert stored.attrs["window_index"][:3] == [0, 0, 1]
    assert FeatureStore(store_path).provenance("wavlm")["model"]["sha256"] is not None
