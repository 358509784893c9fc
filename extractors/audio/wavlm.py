"""``wavlm``: WavLM hidden states pooled over 4 time chunks of each audio window (RAS audio branch).

Each window (RAS: 4 s every 2 s, 16 kHz, zero-padded to 4 s with an attention mask, z-normalised over its
own samples) goes through WavLM; the states of the configured layer(s) are split into ``n_chunks`` equal
time chunks (cut points ``round(i·T/n_chunks)`` over the window's ``T`` frames) and each chunk becomes one
row: the mean ‖ population std of its frames (pooled over the frames that hold audio). A chunk spans
``window_start + window_len·[cut_i, cut_i+1)/T`` seconds, cut at the end of the audio; chunks of a partial
last window that lie past the end have no frames and are stored as zeros with ``mask`` false.

Windows overlap, so rows are sorted by ``start_s`` (ties keep window order); ``attrs["window_index"]`` and
``attrs["chunk_index"]`` give each row's window and chunk, ``attrs["windows_s"]`` the windows' bounds.

Weights can come from another checkpoint whose WavLM tensors sit under a key prefix (RAS takes them from
the ``ssl_model.*`` tensors of a speech-emotion fine-tune): set ``checkpoint`` and ``state_dict_prefix``;
``model`` then only supplies the architecture (its ``config.json``).

Models whose feature encoder uses group norm (WavLM base / base-plus) are trained without attention masks:
they get none, and every window is padded to ``window_s`` so results never depend on batch composition.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from affectcache.extractors.common.audio_windows import (
    AudioWindowConfig,
    AudioWindowExtractor,
    FloatArray,
    ItemAudio,
    level_db,
    pad_batch,
    torch_device_and_dtype_for,
    zero_mean_unit_var,
)
from affectcache.extractors.common.pretrained import (
    DtypeName,
    LoadedModel,
    from_pretrained_kwargs,
    is_local,
    load_prefixed_weights,
    model_identity,
    weights_sha256,
)
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.records import FeatureArray
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.testing.standins import demo_model

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class WavLMModelConfig(AudioWindowConfig):
    """Model and input fields shared by ``wavlm`` and ``wavlm-frames`` (RAS defaults: WavLM-large, 4 s / 2 s
    windows, last layer)."""

    model: str = "microsoft/wavlm-large"
    """Hugging Face hub id or local folder of the WavLM model (``microsoft/wavlm-base-plus``: see
    :func:`wavlm_base_plus`). With ``checkpoint`` set, only its ``config.json`` is used."""

    checkpoint: str | None = None
    """Local weights file (``.safetensors``/``.bin``/``.pt``) or folder whose tensors under
    ``state_dict_prefix`` replace the weights of ``model``; None = the weights of ``model``."""

    state_dict_prefix: str = ""
    """Key prefix of the WavLM tensors in ``checkpoint`` (RAS: ``ssl_model.``); stripped before loading.
    Every WavLM tensor must be found under it."""

    layers: tuple[int, ...] = (-1,)
    """Hidden-state indices used: 0 = transformer input, i = output of layer i, -1 (= number of layers)
    = the model output ``last_hidden_state`` (after WavLM-large's final layer norm). Several are
    concatenated along the feature axis."""

    normalize: bool = True
    """Z-normalise each window over its own samples (zero mean, unit variance) before the model."""

    pad_to_window: bool = True
    """Zero-pad every window to ``window_s`` (RAS), so partial windows see the same input length; false =
    pad only to the longest window of the batch (models with a group-norm encoder are always padded)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.layers:
            problems.append("layers must name at least one hidden-state index")
        if len(set(self.layers)) != len(self.layers):
            problems.append(f"layers must not repeat, got {list(self.layers)}")
        if self.state_dict_prefix and self.checkpoint is None:
            problems.append("state_dict_prefix needs a checkpoint to read the prefixed tensors from")
        return problems


@dataclass(frozen=True, kw_only=True)
class WavLMConfig(WavLMModelConfig):
    """Settings of the ``wavlm`` extractor. Defaults follow RAS: WavLM-large, 4 s / 2 s windows, last layer,
    4 chunks, mean ‖ std."""

    n_chunks: int = 4
    """Equal time chunks per window; one row each."""

    pooling: Literal["mean_std", "mean"] = "mean_std"
    """Per-chunk statistics: mean ‖ population std (2·dim values) or mean only."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.n_chunks < 1:
            problems.append(f"n_chunks must be >= 1, got {self.n_chunks}")
        return problems


def wavlm_base_plus(**overrides: Any) -> WavLMConfig:
    """Preset: ``microsoft/wavlm-base-plus`` (768-d, 12 layers) with the RAS windowing."""
    return WavLMConfig.from_dict({"model": "microsoft/wavlm-base-plus", **overrides})


@dataclass(frozen=True, kw_only=True)
class _Loaded(LoadedModel):
    use_mask: bool
    kernels: tuple[int, ...]
    strides: tuple[int, ...]

    def frames(self, n_samples: int) -> int:
        """Frames the convolutional feature encoder makes of ``n_samples`` samples."""
        n = n_samples
        for k, s in zip(self.kernels, self.strides, strict=True):
            n = (n - k) // s + 1 if n >= k else 0
        return n

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees (the shortest input that gives a frame)."""
        rf, jump = 1, 1
        for k, s in zip(self.kernels, self.strides, strict=True):
            rf += (k - 1) * jump
            jump *= s
        return rf


@dataclass(frozen=True)
class _WindowStates:
    """Pooled chunk rows of one window and the frame spans they came from."""

    pooled: FloatArray
    """(n_chunks, n_values)."""
    cuts: tuple[int, ...]
    """n_chunks + 1 cut points in frames."""
    n_frames: int
    """Frames ``T`` of the window's nominal length (what the cuts split)."""
    nominal_samples: int
    """Samples of the window's nominal length (padded length, or its own)."""
    valid_counts: tuple[int, ...]
    """Frames with audio per chunk."""


def wavlm_identity(cfg: WavLMModelConfig) -> dict[str, Any]:
    """``model_info`` of a WavLM config: hub id + revision or folder hash, or the checkpoint's hash."""
    info = model_identity(cfg.model, cfg.revision)
    if cfg.checkpoint is not None:
        info["checkpoint"] = cfg.checkpoint
        info["state_dict_prefix"] = cfg.state_dict_prefix
        # The weights are the checkpoint's: its hash identifies them.
        info["sha256"] = weights_sha256(cfg.checkpoint) if is_local(cfg.checkpoint) else None
    return info


def load_wavlm(cfg: WavLMModelConfig) -> _Loaded:
    """The WavLM model of a config (from ``model``, or its architecture plus ``checkpoint`` weights)."""
    return _load_wavlm(cfg.model, cfg.revision, checkpoint=cfg.checkpoint, prefix=cfg.state_dict_prefix,
                       device=cfg.device, dtype_name=cfg.dtype)


def window_hidden_states(name: str, loaded: _Loaded, cfg: WavLMModelConfig,
                         waves: list[FloatArray]) -> tuple[Any, list[int]]:
    """WavLM states of ``cfg.layers`` for a batch of windows prepared as RAS does, and each window's
    nominal length in samples (what its frames are counted over).

    Windows are z-normalised (``normalize``), zero-padded to ``window_s`` (or to the longest window when
    ``pad_to_window`` is false and the model takes attention masks), and the chosen layers concatenated.
    Returns a float32 tensor ``(batch, frames, len(layers)·hidden)``.
    """
    import torch

    n_layers = loaded.model.config.num_hidden_layers + 1
    bad = [i for i in cfg.layers if not -n_layers <= i < n_layers]
    if bad:
        raise ConfigError(f"{name}: layers {bad} out of range for a model with {n_layers} hidden states")
    window_samples = round(cfg.window_s * cfg.sample_rate)
    fixed = cfg.pad_to_window or not loaded.use_mask
    nominal = [window_samples if fixed else len(w) for w in waves]
    length = max(max(nominal), loaded.receptive_field)
    prepared = [zero_mean_unit_var(w) if cfg.normalize else np.asarray(w, np.float32) for w in waves]
    values, mask = pad_batch(prepared, length)
    x = torch.from_numpy(values).to(loaded.device, loaded.dtype)
    attention = torch.from_numpy(mask).to(loaded.device) if loaded.use_mask else None
    want_hidden = tuple(cfg.layers) != (-1,)
    with torch.inference_mode():
        out = loaded.model(x, attention_mask=attention, output_hidden_states=want_hidden)
        if want_hidden:
            # Index -1 is the model output (after WavLM-large's final layer norm), as with layers=(-1,).
            available = [*out.hidden_states[:-1], out.last_hidden_state]
            states = [available[i] for i in cfg.layers]
        else:
            states = [out.last_hidden_state]
        return torch.cat(states, dim=-1).float(), nominal


def _load_wavlm(ref: str, revision: str | None, *, checkpoint: str | None, prefix: str, device: str,
                dtype_name: DtypeName) -> _Loaded:
    """Load WavLM from ``ref``, or its architecture from ``ref`` and its weights from a checkpoint."""
    from transformers import AutoConfig, WavLMModel

    kwargs = from_pretrained_kwargs(ref, revision)
    if checkpoint is not None:
        model = WavLMModel(AutoConfig.from_pretrained(ref, **kwargs))
        load_prefixed_weights(model, checkpoint, prefix)
    else:
        model = WavLMModel.from_pretrained(ref, **kwargs)
    dev, dtype = torch_device_and_dtype_for(device, dtype_name)
    model = model.to(dev, dtype).eval()
    cfg = model.config
    return _Loaded(model=model, device=dev, dtype=dtype, use_mask=cfg.feat_extract_norm == "layer",
                   kernels=tuple(cfg.conv_kernel), strides=tuple(cfg.conv_stride))


@register_extractor
class WavLMExtractor(AudioWindowExtractor[WavLMConfig]):
    """WavLM states per window, pooled over ``n_chunks`` time chunks: one segment row per chunk."""

    name = "wavlm"
    version = "1"
    config_type = WavLMConfig
    summary = "WavLM (RAS): 4 s windows every 2 s, mean‖std of 4 time chunks per window, GPU-batched"

    @classmethod
    def demo_config(cls, workdir: Path) -> WavLMConfig:
        from affectcache.extractors.testing.audio_standins import tiny_wavlm

        model, _ = demo_model(cls.name, lambda: tiny_wavlm(workdir / "tiny-wavlm"))
        return WavLMConfig(model=model)

    def model_info(self) -> dict[str, Any]:
        return wavlm_identity(self.config)

    def _load(self) -> _Loaded:
        return load_wavlm(self.config)

    def _forward(self, waves: list[FloatArray]) -> list[_WindowStates]:
        import torch

        cfg, loaded = self.config, self.model
        hidden, nominal = window_hidden_states(self.name, loaded, cfg, waves)
        with torch.inference_mode():
            results = []
            for row, wave in enumerate(waves):
                n_frames = max(1, loaded.frames(nominal[row]))
                n_valid = min(loaded.frames(len(wave)), hidden.shape[1])
                cuts = tuple(round(i * n_frames / cfg.n_chunks) for i in range(cfg.n_chunks + 1))
                pooled, counts = [], []
                for a, b in itertools.pairwise(cuts):
                    span = hidden[row, a: min(b, n_valid)]
                    counts.append(int(span.shape[0]))
                    if span.shape[0] == 0:
                        width = hidden.shape[-1] * (2 if cfg.pooling == "mean_std" else 1)
                        pooled.append(torch.zeros(width, device=hidden.device))
                        continue
                    mean = span.mean(dim=0)
                    if cfg.pooling == "mean_std":
                        pooled.append(torch.cat([mean, span.std(dim=0, unbiased=False)]))
                    else:
                        pooled.append(mean)
                results.append(_WindowStates(pooled=torch.stack(pooled).cpu().numpy(), cuts=cuts,
                                             n_frames=n_frames, nominal_samples=nominal[row],
                                             valid_counts=tuple(counts)))
        return results

    def _features(self, audio: ItemAudio, results: list[_WindowStates]) -> FeatureArray:
        cfg = self.config
        sr = cfg.sample_rate
        starts, ends, masks, rows, window_idx, chunk_idx = [], [], [], [], [], []
        for w_i, (window, res) in enumerate(zip(audio.windows, results, strict=True)):
            span_s = res.nominal_samples / sr
            for c_i in range(cfg.n_chunks):
                a, b = res.cuts[c_i], res.cuts[c_i + 1]
                start = min(window.start_s + span_s * a / res.n_frames, window.end_s)
                end = min(window.start_s + span_s * b / res.n_frames, window.end_s)
                samples = audio.raw[round(start * sr): round(end * sr)]
                starts.append(start)
                ends.append(end)
                masks.append(res.valid_counts[c_i] > 0 and level_db(samples) >= cfg.silence_db)
                rows.append(res.pooled[c_i])
                window_idx.append(w_i)
                chunk_idx.append(c_i)
        order = np.argsort(np.asarray(starts), kind="stable")
        return FeatureArray(
            video_id=audio.item.video_id, kind="segment",
            values=self._to_output(np.stack(rows)[order]),
            start_s=np.asarray(starts)[order], end_s=np.asarray(ends)[order],
            mask=np.asarray(masks, dtype=bool)[order],
            attrs={**self._base_attrs(audio),
                   "window_index": [window_idx[i] for i in order],
                   "chunk_index": [chunk_idx[i] for i in order],
                   "windows_s": [[w.start_s, w.end_s] for w in audio.windows]})
