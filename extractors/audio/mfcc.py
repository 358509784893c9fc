"""``mfcc``: mel-frequency cepstral coefficients per audio frame (LaScA uses 15).

Computed with torch (framing, FFT, mel projection, DCT as matrix products) so the same code runs
batched on a GPU; the mel filters come from ``transformers.audio_utils`` (Slaney scale and norm, as
librosa's defaults). The numbers match ``librosa.feature.mfcc`` with the same settings and
``pad_mode="constant"`` (tested). Frames from many items are stacked into one FFT batch, and long audio
is processed in blocks of ``batch_size`` frames, so memory stays bounded.

Rows are frames: ``frame`` is the MFCC frame index and ``time_s`` its centre, ``frame * hop_s``, relative
to the item start (the clip start for ``start_s``/``end_s`` items). ``mask`` is false on silent frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.media.decode_memo import MediaNeeds

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import torch


@dataclass(frozen=True, kw_only=True)
class MFCCConfig(ExtractorConfig):
    """Settings of the ``mfcc`` extractor. Defaults: 16 kHz, 25 ms Hann windows every 10 ms, 40 mels."""

    batch_size: int = runtime_only(8192)
    """Frames per FFT batch (frames of several items share a batch); bounds memory on long audio."""

    sample_rate: int = 16000
    """Rate the audio is resampled to before analysis, Hz."""

    n_mfcc: int = 15
    """Number of cepstral coefficients kept (LaScA: 15)."""

    n_mels: int = 40
    """Number of mel bands."""

    n_fft: int = 512
    """FFT size in samples (the window is zero-padded to it)."""

    window_s: float = 0.025
    """Analysis (Hann) window length, seconds."""

    hop_s: float = 0.010
    """Hop between frames, seconds; the row rate is 1 / hop_s."""

    f_min: float = 0.0
    """Lowest mel filter edge, Hz."""

    f_max: float | None = None
    """Highest mel filter edge, Hz; None = sample_rate / 2."""

    top_db: float | None = 80.0
    """Floor of the log-mel spectrogram relative to its maximum over the item (librosa's top_db);
    None disables the floor."""

    silence_db: float = -60.0
    """Frames whose RMS level (dB re full scale) is below this are masked as silent."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.sample_rate < 1000:
            problems.append(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc must be in [1, n_mels={self.n_mels}], got {self.n_mfcc}")
        if self.hop_s <= 0 or self.window_s <= 0:
            problems.append("hop_s and window_s must be positive")
        elif self.win_length > self.n_fft:
            problems.append(f"window_s ({self.window_s} s = {self.win_length} samples) must fit in "
                            f"n_fft={self.n_fft}")
        elif self.hop_length < 1:
            problems.append(f"hop_s={self.hop_s} is shorter than one sample")
        nyquist = self.sample_rate / 2
        top = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < top <= nyquist:
            problems.append(f"need 0 <= f_min < f_max <= {nyquist} Hz, got f_min={self.f_min}, "
                            f"f_max={self.f_max}")
        if self.top_db is not None and self.top_db <= 0:
            problems.append(f"top_db must be positive or null, got {self.top_db}")
        return problems

    @property
    def hop_length(self) -> int:
        """Hop in samples."""
        return round(self.hop_s * self.sample_rate)

    @property
    def win_length(self) -> int:
        """Window in samples."""
        return round(self.window_s * self.sample_rate)


_AMIN = 1e-10  # power floor before the log, as librosa.power_to_db


@register_extractor
class MFCCExtractor(Extractor[MFCCConfig]):
    """MFCCs per audio frame, batched across items in torch."""

    name = "mfcc"
    version = "1"
    modality_kind = "frame"
    config_type = MFCCConfig
    summary = "MFCCs per 10 ms audio frame (LaScA: 15 coefficients), torch, GPU-batchable"

    @classmethod
    def demo_config(cls, workdir: Path) -> MFCCConfig:
        return MFCCConfig()

    def media_needs(self) -> MediaNeeds:
        return MediaNeeds(audio_rates=frozenset({self.config.sample_rate}))

    def _load(self) -> dict[str, torch.Tensor]:
        import torch
        from scipy.fft import dct
        from transformers.audio_utils import mel_filter_bank

        cfg = self.config
        mel = mel_filter_bank(num_frequency_bins=cfg.n_fft // 2 + 1, num_mel_filters=cfg.n_mels,
                              min_frequency=cfg.f_min, max_frequency=cfg.f_max or cfg.sample_rate / 2,
                              sampling_rate=cfg.sample_rate, norm="slaney", mel_scale="slaney")
        # Orthonormal DCT-II as a matrix, so the transform is one matmul on any device.
        dct_matrix = dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc]
        window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
        left = (cfg.n_fft - cfg.win_length) // 2
        padded = torch.zeros(cfg.n_fft, dtype=torch.float64)
        padded[left: left + cfg.win_length] = window
        device = torch.device(cfg.device)
        return {
            "mel": torch.from_numpy(np.ascontiguousarray(mel)).to(device, torch.float32),
            "dct": torch.from_numpy(np.ascontiguousarray(dct_matrix.T)).to(device, torch.float32),
            "window": padded.to(device, torch.float32),
        }

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        cfg = self.config
        waves = [decode_audio(it.path, sample_rate=cfg.sample_rate, start_s=it.start_s, end_s=it.end_s)
                 for it in items]
        coeffs, levels = self.compute(waves)
        out = []
        for item, wave, mfcc, level_db in zip(items, waves, coeffs, levels, strict=True):
            frame = np.arange(mfcc.shape[0], dtype=np.int64)
            out.append(FeatureArray(
                video_id=item.video_id, kind="frame", values=mfcc, frame=frame,
                time_s=(frame * (cfg.hop_length / cfg.sample_rate)).astype(np.float64),
                mask=level_db >= cfg.silence_db,
                attrs={"sample_rate": cfg.sample_rate, "offset_s": item.start_s or 0.0,
                       "n_samples": len(wave)}))
        return out

    def compute(self, waves: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """MFCCs (n_frames, n_mfcc) float32 and frame levels (dB re full scale) of mono waveforms.

        Frames of all waveforms are cut as views and pushed through the FFT in shared batches of
        ``batch_size`` frames; results do not depend on how waveforms are grouped.
        """
        import torch

        cfg, model = self.config, self.model
        hop, n_fft = cfg.hop_length, cfg.n_fft
        device = model["window"].device
        framed: list[torch.Tensor] = []
        for wave in waves:
            y = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            # Centred frames with zero padding (librosa center=True, pad_mode="constant").
            y = torch.nn.functional.pad(y, (n_fft // 2, n_fft // 2))
            framed.append(y.unfold(0, n_fft, hop)[: 1 + len(wave) // hop])
        log_mel = [torch.empty((f.shape[0], cfg.n_mels), dtype=torch.float32) for f in framed]
        level = [torch.empty(f.shape[0], dtype=torch.float32) for f in framed]
        for block in _frame_blocks([f.shape[0] for f in framed], cfg.batch_size):
            rows = torch.cat([framed[i][a:b] for i, a, b in block]).to(device)
            spec = torch.fft.rfft(rows * model["window"], n=n_fft)
            power = spec.real.square() + spec.imag.square()
            mel_db = 10.0 * torch.log10(torch.clamp(power @ model["mel"], min=_AMIN))
            rms_db = 10.0 * torch.log10(torch.clamp(rows.square().mean(dim=1), min=_AMIN))
            offset = 0
            for i, a, b in block:
                log_mel[i][a:b] = mel_db[offset: offset + b - a].cpu()
                level[i][a:b] = rms_db[offset: offset + b - a].cpu()
                offset += b - a
        coeffs = []
        for lm in log_mel:
            if cfg.top_db is not None and lm.numel():
                lm = torch.maximum(lm, lm.max() - cfg.top_db)
            coeffs.append((lm.to(device) @ model["dct"]).cpu().numpy().astype(np.float32))
        return coeffs, [lv.numpy() for lv in level]


def _frame_blocks(counts: Sequence[int], block: int) -> list[list[tuple[int, int, int]]]:
    """Split the frames of several items into blocks of at most ``block`` frames.

    Returns, per block, ``(item index, first frame, end frame)`` spans in item order.
    """
    blocks: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    room = block
    for i, n in enumerate(counts):
        start = 0
        while start < n:
            take = min(room, n - start)
            current.append((i, start, start + take))
            start += take
            room -= take
            if room == 0:
                blocks.append(current)
                current, room = [], block
    if current:
        blocks.append(current)
    return blocks
