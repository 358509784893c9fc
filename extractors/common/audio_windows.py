"""Audio windows for pretrained audio models: planning, padding, silence masks and cross-video batching.

Shared by the ``wavlm``, ``wav2vec2-emotion``, ``clap-audio`` and ``ast`` extractors. An item's audio is
decoded once at the model's rate (PyAV resampling) and cut into windows (RAS: 4 s every 2 s, a last
partial window kept if it is at least ``min_window_s`` long; a clip shorter than that gives one window over
the whole clip, so every item with audio has rows). Windows of all items in a task are sorted by length
and batched together, so one forward serves many videos; each window is prepared on its own (padding to a
length that depends only on the window, masks), which makes the results independent of how windows are
grouped into batches.

Row times (``start_s``/``end_s``) are seconds from the item start (the clip start for
``start_s``/``end_s`` items, recorded as ``attrs["offset_s"]``), like ``mfcc``. ``mask`` is false where the
audio under a row is silent: its level, measured after removing the mean (so a DC offset or a constant
signal counts as silence), is below ``silence_db``.

Decoding is per modality: building several audio modalities decodes each file once per modality
(decoding once for all of them is a later optimisation of the build runner).
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from affectcache.extractors.common.pretrained import DtypeName, from_pretrained_kwargs, model_identity
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.records import FeatureArray, MediaItem, ModalityKind
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.media.decode_memo import MediaNeeds

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

SILENCE_FLOOR_DB = -200.0
"""Level reported for digital silence (and empty spans) instead of -inf."""

_NORM_EPS = 1e-7  # variance floor of the z-normalisation (as transformers' Wav2Vec2FeatureExtractor)


# ------------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class AudioWindow:
    """One window of an item's audio: samples ``[start, stop)`` at ``sample_rate``."""

    start: int
    """First sample (from the item start)."""
    stop: int
    """One past the last sample."""
    sample_rate: int
    """Samples per second."""

    @property
    def n_samples(self) -> int:
        """Length in samples."""
        return self.stop - self.start

    @property
    def start_s(self) -> float:
        """Start in seconds from the item start."""
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        """End in seconds from the item start."""
        return self.stop / self.sample_rate


def plan_windows(n_samples: int, sample_rate: int, *, window_s: float, hop_s: float,
                 min_window_s: float) -> list[AudioWindow]:
    """Windows of ``window_s`` every ``hop_s`` over ``n_samples`` samples.

    Windows start at 0, hop, 2·hop, ... and are cut at the end of the audio; planning stops at the first
    window that reaches the end, which is kept if it is at least ``min_window_s`` long (RAS
    ``slice_audio``). Audio shorter than ``min_window_s`` gives one window over all of it.

    Args:
        n_samples: Length of the audio in samples.
        sample_rate: Samples per second.
        window_s: Window length, seconds.
        hop_s: Hop between window starts, seconds.
        min_window_s: Shortest partial last window kept, seconds.

    Returns:
        The windows, in time order (empty only when ``n_samples`` is 0).
    """
    if n_samples <= 0:
        return []
    win = max(1, round(window_s * sample_rate))
    hop = max(1, round(hop_s * sample_rate))
    min_len = round(min_window_s * sample_rate)
    windows: list[AudioWindow] = []
    start = 0
    while start < n_samples:
        stop = min(start + win, n_samples)
        if stop - start >= min_len:
            windows.append(AudioWindow(start, stop, sample_rate))
        if stop >= n_samples:
            break
        start += hop
    if not windows:
        windows.append(AudioWindow(0, n_samples, sample_rate))
    return windows


# ------------------------------------------------------------------------------------- signal helpers
def level_db(samples: npt.NDArray[np.floating[Any]]) -> float:
    """Level of a span in dB re full scale after removing its mean (DC); ``SILENCE_FLOOR_DB`` if empty."""
    if samples.size == 0:
        return SILENCE_FLOOR_DB
    x = samples.astype(np.float64)
    power = float(np.mean(np.square(x - x.mean())))
    return max(SILENCE_FLOOR_DB, 10.0 * math.log10(power)) if power > 0 else SILENCE_FLOOR_DB


def zero_mean_unit_var(samples: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Per-window z-normalisation over the window's own samples (as Wav2Vec2FeatureExtractor's
    ``do_normalize``); constant input gives zeros, never NaN."""
    x = samples.astype(np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    normed: FloatArray = ((x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)).astype(np.float32)
    return normed


def peak_normalize(samples: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Scale so the largest absolute sample is 1; all-zero input is returned unchanged."""
    x = np.asarray(samples, dtype=np.float32)
    peak = float(np.abs(x).max()) if x.size else 0.0
    return x / peak if peak > 0 else x


def pad_batch(waves: Sequence[FloatArray], length: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Zero-pad waveforms to ``length`` samples: ``(batch, length)`` values and 1/0 attention mask."""
    values = np.zeros((len(waves), length), dtype=np.float32)
    mask = np.zeros((len(waves), length), dtype=np.int64)
    for i, w in enumerate(waves):
        n = min(len(w), length)
        values[i, :n] = w[:n]
        mask[i, :n] = 1
    return values, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest first, so each batch pads little."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


T = TypeVar("T")


def run_batched(inputs: Sequence[FloatArray], batch_size: int,
                forward: Callable[[list[FloatArray]], list[T]]) -> list[T]:
    """``forward`` over length-sorted batches of ``inputs``; results come back in input order."""
    results: list[T | None] = [None] * len(inputs)
    for batch in length_sorted_batches([len(x) for x in inputs], batch_size):
        outs = forward([inputs[i] for i in batch])
        if len(outs) != len(batch):
            raise RuntimeError(f"forward returned {len(outs)} results for a batch of {len(batch)}")
        for i, out in zip(batch, outs, strict=True):
            results[i] = out
    return [r for r in results if r is not None]


def masked_mean_std(hidden: Any, valid: Any) -> tuple[Any, Any]:
    """Mean and population std over time of ``hidden`` (batch, time, dim) where ``valid`` (batch, time)
    is true; rows without valid steps give zeros. Works on torch tensors."""
    weights = valid.to(hidden.dtype).unsqueeze(-1)
    count = weights.sum(dim=1).clamp(min=1.0)
    mean = (hidden * weights).sum(dim=1) / count
    var = (((hidden - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
    return mean, var.clamp(min=0.0).sqrt()


# ------------------------------------------------------------------------------------ config and base
@dataclass(frozen=True, kw_only=True)
class AudioWindowConfig(ExtractorConfig):
    """Settings shared by the windowed audio-model extractors (each subclass sets its own defaults)."""

    uses_gpu: ClassVar[bool] = True

    model: str = ""
    """Hugging Face hub id, or a local folder (loaded offline and identified by the sha256 of its files)."""

    revision: str | None = None
    """Hub revision (commit, tag or branch) of ``model``; pin one for reproducible stores. Ignored for
    local folders."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = runtime_only("auto")
    """Compute dtype: ``auto`` = float32 on CPU, bfloat16 (else float16) on CUDA; half precision needs a
    CUDA device."""

    batch_size: int = runtime_only(16)
    """Windows per model forward; windows of several videos share a batch, sorted by length."""

    sample_rate: int = 16000
    """Rate the audio is decoded at, Hz; must be the model's input rate."""

    window_s: float = 4.0
    """Window length, seconds."""

    hop_s: float = 2.0
    """Hop between window starts, seconds."""

    min_window_s: float = 1.0
    """The last (partial) window is kept only if at least this long, seconds."""

    silence_db: float = -50.0
    """Rows whose audio level (dB re full scale, DC removed) is below this are masked as silent."""

    output_dtype: Literal["float32", "float16"] = "float32"
    """Float type of the stored values."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.model:
            problems.append("model must name a hub id or a local folder")
        if self.sample_rate < 1000:
            problems.append(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not (self.window_s > 0 and self.hop_s > 0):
            problems.append(f"window_s and hop_s must be positive, got {self.window_s}, {self.hop_s}")
        elif self.hop_s > self.window_s:
            problems.append(f"hop_s ({self.hop_s}) must not exceed window_s ({self.window_s}): audio "
                            "between windows would be skipped")
        if not 0 < self.min_window_s <= self.window_s:
            problems.append(f"min_window_s must be in (0, window_s={self.window_s}], got {self.min_window_s}")
        return problems


C = TypeVar("C", bound=AudioWindowConfig)


@dataclass(frozen=True, kw_only=True)
class ItemAudio:
    """One item's decoded audio and its windows, as the model-specific code sees them."""

    item: MediaItem
    """The item."""
    wave: FloatArray
    """Mono samples at the config's sample rate (after any item-level normalisation)."""
    raw: FloatArray
    """The decoded samples before normalisation (silence is measured on these)."""
    windows: list[AudioWindow]
    """The item's windows."""


class AudioWindowExtractor(Extractor[C], Generic[C]):
    """Base of the windowed audio-model extractors: decoding, windowing and cross-item batching.

    Subclasses implement :meth:`_load`, :meth:`_forward` (a batch of window waveforms → one result per
    window) and :meth:`_features` (an item's window results → its :class:`FeatureArray`); they may
    override :meth:`_prepare_item` for item-level normalisation.
    """

    modality_kind: ClassVar[ModalityKind] = "segment"

    def model_info(self) -> dict[str, Any]:
        return model_identity(self.config.model, self.config.revision)

    def media_needs(self) -> MediaNeeds:
        return MediaNeeds(audio_rates=frozenset({self.config.sample_rate}))

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        cfg = self.config
        _ = self.model  # load first: a broken model is a bug, not bad media
        audios = []
        for item in items:
            raw = decode_audio(item.path, sample_rate=cfg.sample_rate, start_s=item.start_s, end_s=item.end_s)
            windows = plan_windows(len(raw), cfg.sample_rate, window_s=cfg.window_s, hop_s=cfg.hop_s,
                                   min_window_s=cfg.min_window_s)
            audios.append(ItemAudio(item=item, wave=self._prepare_item(raw), raw=raw, windows=windows))
        flat = [a.wave[w.start: w.stop] for a in audios for w in a.windows]
        results = run_batched(flat, cfg.batch_size, self._forward)
        out = []
        offset = 0
        for audio in audios:
            n = len(audio.windows)
            out.append(self._features(audio, results[offset: offset + n]))
            offset += n
        return out

    def _prepare_item(self, raw: FloatArray) -> FloatArray:
        """Item-level normalisation before windowing (default: none)."""
        return raw

    @abstractmethod
    def _forward(self, waves: list[FloatArray]) -> list[Any]:
        """Run the model on a batch of window waveforms; one result per window, in order."""

    @abstractmethod
    def _features(self, audio: ItemAudio, results: list[Any]) -> FeatureArray:
        """Assemble one item's rows from its windows' results."""

    # ---- helpers for subclasses -----------------------------------------------------------------------
    def _window_masks(self, audio: ItemAudio) -> npt.NDArray[np.bool_]:
        """Per window: true where the window is not silent."""
        return np.array([level_db(audio.raw[w.start: w.stop]) >= self.config.silence_db
                         for w in audio.windows], dtype=bool)

    def _base_attrs(self, audio: ItemAudio) -> dict[str, Any]:
        return {"sample_rate": self.config.sample_rate, "offset_s": audio.item.start_s or 0.0,
                "n_samples": len(audio.raw)}

    def _to_output(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.ascontiguousarray(values, dtype=np.dtype(self.config.output_dtype))


def window_times(windows: Sequence[AudioWindow]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``start_s``, ``end_s`` arrays of windows."""
    return (np.array([w.start_s for w in windows], dtype=np.float64),
            np.array([w.end_s for w in windows], dtype=np.float64))


def torch_device_and_dtype_for(device: str, dtype: DtypeName) -> tuple[Any, Any]:
    """The torch device and compute dtype for a config's ``device`` and ``dtype`` (validated)."""
    import torch

    from affectcache.extractors.common.pretrained import resolve_dtype

    return torch.device(device), resolve_dtype(dtype, device)


def load_model_and_features(name: str, model_cls: Any, features_cls: Any,
                            cfg: AudioWindowConfig) -> tuple[Any, Any, Any, Any]:
    """``(model, feature extractor, device, dtype)`` for ``cfg.model`` (hub id + revision or folder).

    Refuses a model whose feature extractor expects another sample rate than the config's.
    """
    device, dtype = torch_device_and_dtype_for(cfg.device, cfg.dtype)
    kwargs = from_pretrained_kwargs(cfg.model, cfg.revision)
    model = model_cls.from_pretrained(cfg.model, **kwargs).to(device, dtype).eval()
    features = features_cls.from_pretrained(cfg.model, **kwargs)
    if features.sampling_rate != cfg.sample_rate:
        raise ConfigError(f"{name}: {cfg.model} expects {features.sampling_rate} Hz audio; set "
                          f"sample_rate={features.sampling_rate} (got {cfg.sample_rate})")
    return model, features, device, dtype
