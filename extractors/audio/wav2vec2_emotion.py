"""``wav2vec2-emotion``: dimensional speech emotion (arousal, dominance, valence) per audio window.

Loads checkpoints in the layout of ``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``: a Wav2Vec2
encoder under ``wav2vec2.*`` and a regression head under ``classifier.*`` (``dense`` → tanh →
``out_proj``) applied to the time-mean of the last hidden state. The head is not a transformers class, so
it is defined here with the same parameter names, and the published state dict loads as is (every tensor
must be found; a mismatch is refused).

One segment row per window (default 4 s every 2 s; each window z-normalised over its own samples, as the
model's feature extractor does): ``values`` = the pooled last-layer state (hidden size) followed by the
predictions in the order of the model's ``id2label`` (published: arousal, dominance, valence; roughly in
[0, 1]); ``attrs["columns"]`` names the prediction columns. Pooling uses only frames with audio, so a
padded window gives what the model gives on the window alone.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.common.audio_windows import (
    AudioWindowConfig,
    AudioWindowExtractor,
    ItemAudio,
    masked_mean_std,
    pad_batch,
    torch_device_and_dtype_for,
    window_times,
    zero_mean_unit_var,
)
from affectcache.extractors.common.pretrained import LoadedModel, from_pretrained_kwargs
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.records import FeatureArray
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.testing.standins import demo_model

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.extractors.common.audio_windows import FloatArray

logger = logging.getLogger(__name__)

DEFAULT_LABELS = ("arousal", "dominance", "valence")


@dataclass(frozen=True, kw_only=True)
class Wav2Vec2EmotionConfig(AudioWindowConfig):
    """Settings of the ``wav2vec2-emotion`` extractor."""

    model: str = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
    """Hugging Face hub id or local folder of a checkpoint with the audeering layout."""

    normalize: bool = True
    """Z-normalise each window over its own samples (the model's feature extractor does)."""


@functools.cache
def emotion_model_class() -> type[Any]:
    """The Wav2Vec2 + regression-head model class (built on first use: it needs torch/transformers)."""
    import torch
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(torch.nn.Module):  # type: ignore[misc]
        """``dense`` → tanh → ``out_proj``, with dropout around (inactive at inference)."""

        def __init__(self, config: Any) -> None:
            super().__init__()
            self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = torch.nn.Dropout(getattr(config, "final_dropout", 0.0))
            self.out_proj = torch.nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, pooled: Any) -> Any:
            return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))

    class Wav2Vec2EmotionRegressor(Wav2Vec2PreTrainedModel):  # type: ignore[misc]
        """Wav2Vec2 encoder (``wav2vec2.*``) + regression head (``classifier.*``)."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: Any, attention_mask: Any) -> tuple[Any, Any]:
            """(time-mean of the last hidden state over the frames with audio, predictions).

            Group-norm encoders are trained without attention masks and get none; the mask then only
            selects the frames pooled."""
            takes_mask = self.config.feat_extract_norm == "layer"
            hidden = self.wav2vec2(input_values,
                                   attention_mask=attention_mask if takes_mask else None).last_hidden_state
            valid = self.wav2vec2._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
            pooled, _ = masked_mean_std(hidden, valid.bool())
            return pooled, self.classifier(pooled)

    return Wav2Vec2EmotionRegressor


@dataclass(frozen=True, kw_only=True)
class _Loaded(LoadedModel):
    labels: tuple[str, ...]
    use_mask: bool
    receptive_field: int


@register_extractor
class Wav2Vec2EmotionExtractor(AudioWindowExtractor[Wav2Vec2EmotionConfig]):
    """Pooled Wav2Vec2 state + arousal/dominance/valence predictions per window."""

    name = "wav2vec2-emotion"
    version = "1"
    config_type = Wav2Vec2EmotionConfig
    summary = "wav2vec2 emotion regressor (audeering layout): pooled state + arousal/dominance/valence"

    @classmethod
    def demo_config(cls, workdir: Path) -> Wav2Vec2EmotionConfig:
        from affectcache.extractors.testing.audio_standins import tiny_wav2vec2_emotion

        model, _ = demo_model(cls.name, lambda: tiny_wav2vec2_emotion(workdir / "tiny-wav2vec2-emotion"))
        return Wav2Vec2EmotionConfig(model=model)

    def _load(self) -> _Loaded:
        cfg = self.config
        device, dtype = torch_device_and_dtype_for(cfg.device, cfg.dtype)
        model, info = emotion_model_class().from_pretrained(
            cfg.model, output_loading_info=True, **from_pretrained_kwargs(cfg.model, cfg.revision))
        missing = [k for k in info.get("missing_keys", ()) if not k.endswith("position_ids")]
        mismatched = list(info.get("mismatched_keys", ()))
        if missing or mismatched:
            raise ConfigError(f"{cfg.model} does not have the wav2vec2 + regression-head layout: missing "
                              f"{missing[:5]}, mismatched {mismatched[:5]}")
        if info.get("unexpected_keys"):
            logger.info("%s: ignoring unused tensors %s", cfg.model, sorted(info["unexpected_keys"])[:5])
        hf = model.config
        id2label = {int(k): str(v) for k, v in (hf.id2label or {}).items()}
        labels = tuple(id2label.get(i, f"label_{i}") for i in range(hf.num_labels))
        if labels == tuple(f"LABEL_{i}" for i in range(hf.num_labels)) and hf.num_labels == 3:
            labels = DEFAULT_LABELS  # configs without names: the published order
        rf, jump = 1, 1
        for k, s in zip(hf.conv_kernel, hf.conv_stride, strict=True):
            rf, jump = rf + (k - 1) * jump, jump * s
        return _Loaded(model=model.to(device, dtype).eval(), device=device, dtype=dtype, labels=labels,
                       use_mask=hf.feat_extract_norm == "layer", receptive_field=rf)

    def _forward(self, waves: list[FloatArray]) -> list[FloatArray]:
        import torch

        cfg, loaded = self.config, self.model
        prepared = [zero_mean_unit_var(w) if cfg.normalize else np.asarray(w, np.float32) for w in waves]
        # Group-norm encoders take no attention mask: pad every window to the same length instead, so a
        # window's result never depends on its batch.
        fixed = round(cfg.window_s * cfg.sample_rate) if not loaded.use_mask else 0
        length = max(max(len(w) for w in waves), loaded.receptive_field, fixed)
        values, mask = pad_batch(prepared, length)
        x = torch.from_numpy(values).to(loaded.device, loaded.dtype)
        attention = torch.from_numpy(mask).to(loaded.device)
        with torch.inference_mode():
            pooled, preds = loaded.model(x, attention_mask=attention)
            out = torch.cat([pooled, preds], dim=-1).float().cpu().numpy()
        return list(out)

    def _features(self, audio: ItemAudio, results: list[FloatArray]) -> FeatureArray:
        start, end = window_times(audio.windows)
        labels = self.model.labels
        return FeatureArray(
            video_id=audio.item.video_id, kind="segment", values=self._to_output(np.stack(results)),
            start_s=start, end_s=end, mask=self._window_masks(audio),
            attrs={**self._base_attrs(audio), "columns": {"embedding": [0, len(results[0]) - len(labels)],
                                                          **{name: len(results[0]) - len(labels) + i
                                                             for i, name in enumerate(labels)}}})
