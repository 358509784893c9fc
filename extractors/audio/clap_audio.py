"""``clap-audio``: CLAP (HTSAT) audio embeddings per window (SCD-MMPSR audio encoder).

Audio is decoded at 48 kHz and peak-normalised (SCD: per item; per window or off as options). Each window
(default 4 s every 2 s, at most the model's 10 s input) is turned into log-mel features by the model's own
``ClapFeatureExtractor`` (shorter windows are repeated to fill the 10 s input, ``repeatpad``) and encoded:

- ``output="embedding"``: the projected, L2-normalised audio embedding (``get_audio_features``'s
  ``pooler_output``; 512-d for the LAION models), one row per window;
- ``output="seq"``: SCD's "seq" mode, the audio tower's 4-D ``last_hidden_state``
  ``(channels, freq groups, time·freq)`` averaged over its last axis, channels last: values of shape
  ``(n_windows, T, 768)`` (``T`` = 2 for the LAION configs).

Fused checkpoints (``enable_fusion``) take 4-channel ``fusion`` features and a per-input ``is_longer``
flag. Windows never exceed the model input, so ``is_longer`` is false for every window: the
``transformers`` feature extractor instead marks a *random* input of the batch as longer when none is,
which would make the result depend on batch composition (so it is overridden). Unfused checkpoints take
``rand_trunc`` features (stack.md); no random crop happens because windows fit the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from affectcache.extractors.common.audio_windows import (
    AudioWindowConfig,
    AudioWindowExtractor,
    ItemAudio,
    load_model_and_features,
    peak_normalize,
    window_times,
)
from affectcache.extractors.common.pretrained import LoadedModel
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.records import FeatureArray
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.testing.standins import demo_model

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.extractors.common.audio_windows import FloatArray

CLAP_MAX_WINDOW_S = 10.0
"""Longest window the LAION CLAP input (10 s) holds without a random crop."""


@dataclass(frozen=True, kw_only=True)
class ClapAudioConfig(AudioWindowConfig):
    """Settings of the ``clap-audio`` extractor. Defaults: ``laion/clap-htsat-fused``, 48 kHz, per-item peak
    normalisation, 4 s windows every 2 s, projected embedding."""

    model: str = "laion/clap-htsat-fused"
    """Hugging Face hub id or local folder of a CLAP model (``ClapModel`` + ``ClapFeatureExtractor``)."""

    sample_rate: int = 48000
    """Rate the audio is decoded at, Hz; must be the feature extractor's rate (48 kHz for LAION CLAP)."""

    output: Literal["embedding", "seq"] = "embedding"
    """``embedding``: projected audio embedding per window; ``seq``: SCD's last-hidden-state sequence
    (mean over the last axis) per window, values ``(n_windows, T, hidden)``."""

    peak_normalize: Literal["item", "window", "none"] = "item"
    """Scale so the loudest sample is 1: over the whole item (SCD), per window, or not at all. Silent
    audio is left as is."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.window_s > CLAP_MAX_WINDOW_S:
            problems.append(f"window_s must be <= {CLAP_MAX_WINDOW_S} s (the CLAP input; longer windows "
                            f"would be cropped at random), got {self.window_s}")
        return problems


@dataclass(frozen=True, kw_only=True)
class _Loaded(LoadedModel):
    truncation: str
    """The feature extractor's truncation: ``fusion`` for fused checkpoints, else ``rand_trunc``."""


@register_extractor
class ClapAudioExtractor(AudioWindowExtractor[ClapAudioConfig]):
    """CLAP audio embedding (or SCD "seq" states) per window."""

    name = "clap-audio"
    version = "1"
    config_type = ClapAudioConfig
    summary = "CLAP HTSAT audio (SCD): projected embedding or 'seq' states per window, 48 kHz, peak-normed"

    @classmethod
    def demo_config(cls, workdir: Path) -> ClapAudioConfig:
        from affectcache.extractors.testing.audio_standins import tiny_clap

        model, _ = demo_model(cls.name, lambda: tiny_clap(workdir / "tiny-clap"))
        return ClapAudioConfig(model=model)

    def _load(self) -> _Loaded:
        from transformers import ClapFeatureExtractor, ClapModel

        cfg = self.config
        model, features, device, dtype = load_model_and_features(
            self.name, ClapModel, ClapFeatureExtractor, cfg)
        if round(cfg.window_s * cfg.sample_rate) > features.nb_max_samples:
            raise ConfigError(f"clap-audio: window_s={cfg.window_s} exceeds the model input of "
                              f"{features.nb_max_samples / cfg.sample_rate} s")
        fusion = bool(model.config.audio_config.enable_fusion)
        return _Loaded(model=model, features=features, device=device, dtype=dtype,
                       truncation="fusion" if fusion else "rand_trunc")

    def _prepare_item(self, raw: FloatArray) -> FloatArray:
        return peak_normalize(raw) if self.config.peak_normalize == "item" else raw

    def _forward(self, waves: list[FloatArray]) -> list[FloatArray]:
        import torch

        cfg, loaded = self.config, self.model
        if cfg.peak_normalize == "window":
            waves = [peak_normalize(w) for w in waves]
        inputs = loaded.features([np.asarray(w, dtype=np.float32) for w in waves],
                                 sampling_rate=cfg.sample_rate, truncation=loaded.truncation,
                                 padding="repeatpad", return_tensors="pt")
        features = inputs["input_features"].to(loaded.device, loaded.dtype)
        # Every window fits the input: none is "longer" (see the module docstring).
        is_longer = torch.zeros((len(waves), 1), dtype=torch.bool, device=loaded.device)
        with torch.inference_mode():
            out = loaded.model.get_audio_features(input_features=features, is_longer=is_longer)
            if cfg.output == "embedding":
                result = out.pooler_output
            else:
                result = out.last_hidden_state.mean(dim=-1).transpose(1, 2)
            return list(result.float().cpu().numpy())

    def _features(self, audio: ItemAudio, results: list[FloatArray]) -> FeatureArray:
        start, end = window_times(audio.windows)
        return FeatureArray(
            video_id=audio.item.video_id, kind="segment", values=self._to_output(np.stack(results)),
            start_s=start, end_s=end, mask=self._window_masks(audio),
            attrs={**self._base_attrs(audio), "output": self.config.output,
                   "truncation": self.model.truncation})
