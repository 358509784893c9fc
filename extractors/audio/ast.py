"""``ast``: Audio Spectrogram Transformer embeddings per window (Kookmin ABAW 2026 audio encoder).

Each window (default 4 s every 2 s; up to the native 10.24 s) of 16 kHz audio becomes a Kaldi-style
128-bin log-mel fbank through the model's own ``ASTFeatureExtractor`` (padded to 1024 frames and
normalised with the AudioSet statistics), and the AST's pooled output (mean of the CLS and distillation
tokens; 768-d for the AudioSet model) is one segment row. Each window is featurised on its own, so results
do not depend on batch composition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors.common.audio_windows import (
    AudioWindowConfig,
    AudioWindowExtractor,
    ItemAudio,
    load_model_and_features,
    window_times,
)
from affectcache.extractors.common.pretrained import LoadedModel
from affectcache.extractors.core.records import FeatureArray
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.testing.standins import demo_model

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.extractors.common.audio_windows import FloatArray

AST_MAX_WINDOW_S = 10.24
"""1024 fbank frames every 10 ms: the AudioSet AST input."""


@dataclass(frozen=True, kw_only=True)
class ASTConfig(AudioWindowConfig):
    """Settings of the ``ast`` extractor. Defaults: the AudioSet AST, 16 kHz, 4 s windows every 2 s (set
    ``window_s = hop_s = 10.24`` for the native input length)."""

    model: str = "MIT/ast-finetuned-audioset-10-10-0.4593"
    """Hugging Face hub id or local folder of an AST model with its ``ASTFeatureExtractor``."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.window_s > AST_MAX_WINDOW_S:
            problems.append(f"window_s must be <= {AST_MAX_WINDOW_S} s (1024 fbank frames; longer windows "
                            f"would be truncated), got {self.window_s}")
        return problems


@register_extractor
class ASTExtractor(AudioWindowExtractor[ASTConfig]):
    """AST pooled embedding per window."""

    name = "ast"
    version = "1"
    config_type = ASTConfig
    summary = "Audio Spectrogram Transformer (AudioSet): pooled 768-d per window, 16 kHz fbank"

    @classmethod
    def demo_config(cls, workdir: Path) -> ASTConfig:
        from affectcache.extractors.testing.audio_standins import tiny_ast

        model, _ = demo_model(cls.name, lambda: tiny_ast(workdir / "tiny-ast"))
        return ASTConfig(model=model)

    def _load(self) -> LoadedModel:
        from transformers import ASTFeatureExtractor, ASTModel

        model, features, device, dtype = load_model_and_features(
            self.name, ASTModel, ASTFeatureExtractor, self.config)
        return LoadedModel(model=model, features=features, device=device, dtype=dtype)

    def _forward(self, waves: list[FloatArray]) -> list[FloatArray]:
        import torch

        loaded = self.model
        # The fbank needs one 25 ms frame: pad (only) shorter windows with silence.
        shortest = round(0.025 * self.config.sample_rate)
        waves = [np.pad(w, (0, max(0, shortest - len(w)))) for w in waves]
        inputs = loaded.features([np.asarray(w, dtype=np.float32) for w in waves],
                                 sampling_rate=self.config.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = loaded.model(inputs["input_values"].to(loaded.device, loaded.dtype))
            return list(out.pooler_output.float().cpu().numpy())

    def _features(self, audio: ItemAudio, results: list[FloatArray]) -> FeatureArray:
        start, end = window_times(audio.windows)
        return FeatureArray(
            video_id=audio.item.video_id, kind="segment", values=self._to_output(np.stack(results)),
            start_s=start, end_s=end, mask=self._window_masks(audio), attrs=self._base_attrs(audio))
