"""``wavlm-frames``: frame-level WavLM hidden states (one 20 ms row per encoder frame), stitched from windows.

The audio is windowed, normalised, padded and masked exactly as by ``wavlm`` (RAS: 4 s every 2 s, 16 kHz,
zero-padded to 4 s, z-normalised over the window's own samples; the model is loaded by the same loader, so
``checkpoint`` + ``state_dict_prefix`` work the same). Instead of pooling, every encoder frame of the
configured ``layers`` (concatenated on the feature axis) becomes one row.

Windows overlap, so each frame is taken from the window where it lies most central (the centre rule):
window ``k`` (starting at ``k·hop``) contributes the frames whose start lies in
``[k·hop + (win−hop)/2, k·hop + (win+hop)/2)``; the first window also gives every frame before that range
and the last window every frame after it, up to the last frame it has. The encoder frame ``f`` starts at
sample ``f·stride`` (``stride`` = product of the conv strides, 320 → 20 ms at 16 kHz), so rows carry
``frame`` = global frame index (contiguous from 0) and ``time_s`` = the frame's *start*, ``f·stride/rate``
(= ``f·0.02`` s). A frame exists where the model gives one over the window's own audio (its receptive
field, 400 samples, must fit), so an item gives about ``duration/0.02`` rows, one or two fewer.

``mask`` is false on silent frames: the silence rule of :mod:`~affectcache.extractors.common.audio_windows`
(level with DC removed below ``silence_db``) applied to each frame's own 20 ms of raw samples
``[f·stride, (f+1)·stride)``, not to the window's level.

Values are stored as float16 (``output_dtype``'s default here): WavLM-large gives 50 rows × 1024 values
per second and layer. float32 stays selectable because float16 rounding of float32 results that differ by
~1e-6 between batch groupings can flip one float16 ULP (~1e-3), more than exact-comparison tests allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from affectcache.extractors.audio.wavlm import (
    WavLMModelConfig,
    _Loaded,
    load_wavlm,
    wavlm_identity,
    window_hidden_states,
)
from affectcache.extractors.common.audio_windows import (
    AudioWindowExtractor,
    FloatArray,
    ItemAudio,
    level_db,
)
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.records import FeatureArray, ModalityKind
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.testing.standins import demo_model

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class WavLMFramesConfig(WavLMModelConfig):
    """Settings of the ``wavlm-frames`` extractor: the model and windowing fields of ``wavlm`` (same
    defaults, same meaning), without the pooling ones."""

    output_dtype: Literal["float32", "float16"] = "float16"
    """Float type of the stored values: float16 for frame states (they are 50 rows per second); float32
    where exact comparisons are needed (the contract tests)."""


def frame_stride(loaded: _Loaded) -> int:
    """Samples between the starts of consecutive encoder frames (product of the conv strides)."""
    return math.prod(loaded.strides)


def centre_bounds(index: int, n_windows: int, *, window: int, hop: int) -> tuple[float, float]:
    """Sample range ``[lo, hi)`` of frame starts that window ``index`` of ``n_windows`` contributes.

    The centre rule: ``[index·hop + (window−hop)/2, index·hop + (window+hop)/2)``, widened to −inf for the
    first window and +inf for the last, so consecutive ranges tile the whole time axis.
    """
    lo = -math.inf if index == 0 else index * hop + (window - hop) / 2
    hi = math.inf if index == n_windows - 1 else index * hop + (window + hop) / 2
    return lo, hi


@register_extractor
class WavLMFramesExtractor(AudioWindowExtractor[WavLMFramesConfig]):
    """WavLM states of the chosen layers, one frame row per 20 ms encoder frame, stitched by the centre
    rule."""

    name = "wavlm-frames"
    version = "1"
    modality_kind: ClassVar[ModalityKind] = "frame"
    config_type = WavLMFramesConfig
    summary = "WavLM frame states (20 ms rows) of chosen layers, RAS windows stitched by the centre rule"

    @classmethod
    def demo_config(cls, workdir: Path) -> WavLMFramesConfig:
        # The demo's ras-audio head trains on these rows; the tiny stand-in is the one ``wavlm`` uses.
        from affectcache.extractors.testing.audio_standins import tiny_wavlm

        model, _ = demo_model(cls.name, lambda: tiny_wavlm(workdir / "tiny-wavlm"))
        return WavLMFramesConfig(model=model)

    def model_info(self) -> dict[str, Any]:
        return wavlm_identity(self.config)

    def _load(self) -> _Loaded:
        return load_wavlm(self.config)

    def _forward(self, waves: list[FloatArray]) -> list[FloatArray]:
        """Per window: its frames' states, ``(frames over the window's own audio, n_values)`` float32."""

        cfg, loaded = self.config, self.model
        # The same input preparation as ``wavlm``: frame rows and pooled rows see identical model inputs.
        hidden_t, _ = window_hidden_states(self.name, loaded, cfg, waves)
        hidden = hidden_t.cpu().numpy()
        results: list[FloatArray] = []
        for row, wave in enumerate(waves):
            n_valid = min(loaded.frames(len(wave)), hidden.shape[1])
            results.append(np.ascontiguousarray(hidden[row, :n_valid]))
        return results

    def _features(self, audio: ItemAudio, results: list[FloatArray]) -> FeatureArray:
        cfg = self.config
        stride = frame_stride(self.model)
        window = round(cfg.window_s * cfg.sample_rate)
        hop = round(cfg.hop_s * cfg.sample_rate)
        width = len(cfg.layers) * int(self.model.model.config.hidden_size)
        frames: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        rows: list[FloatArray] = []
        for k, (win, states) in enumerate(zip(audio.windows, results, strict=True)):
            if win.start % stride:
                # Global frame indices need every window to start on the frame grid.
                raise ConfigError(f"{self.name}: hop_s={cfg.hop_s} is not a multiple of the model's frame "
                                  f"stride ({stride} samples at {cfg.sample_rate} Hz)")
            lo, hi = centre_bounds(k, len(audio.windows), window=window, hop=hop)
            local_starts = win.start + stride * np.arange(len(states), dtype=np.int64)
            keep = (local_starts >= lo) & (local_starts < hi)
            frames.append(local_starts[keep] // stride)
            rows.append(states[keep])
        frame = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
        values = np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)
        masks = np.array([level_db(audio.raw[f * stride: (f + 1) * stride]) >= cfg.silence_db
                          for f in frame], dtype=bool)
        return FeatureArray(
            video_id=audio.item.video_id, kind="frame", values=self._to_output(values.reshape(-1, width)),
            frame=frame, time_s=frame.astype(np.float64) * (stride / cfg.sample_rate), mask=masks,
            attrs={**self._base_attrs(audio), "frame_stride": stride, "layers": list(cfg.layers),
                   "windows_s": [[w.start_s, w.end_s] for w in audio.windows]})
