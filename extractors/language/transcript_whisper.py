"""``transcript-whisper``: Whisper speech transcripts, one text row per recognised segment.

Audio is decoded once per item (16 kHz mono, PyAV) and handed to a
:class:`~affectcache.extractors.engines.speech.SpeechRecognizer`: ``openai-whisper`` (the package; default
model ``turbo``) or the batched ``transformers`` Whisper; both give the same row schema. Decoding is
deterministic by default (temperature 0, greedy, no fallback unless ``temperatures`` lists more).

Rows: ``values`` are the segment texts (stripped); ``start_s``/``end_s`` the segment bounds relative to the
item start. The other per-row fields are lists in the entry attrs, parallel to the rows:
``avg_logprob`` (null where nothing was decoded), ``no_speech_prob``, ``language`` and, with
``word_timestamps``, ``words`` (per row a list of ``[word, start_s, end_s, probability]``, times relative to
the item start). Segments Whisper judges to be non-speech (``no_speech_prob > no_speech_threshold`` and
``avg_logprob < logprob_threshold``, Whisper's own rule) and empty texts are **masked, not dropped**; an
item where nothing at all was recognised gets one empty, masked row spanning it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from affectcache.extractors.common.pretrained import model_identity
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.engines.speech import (
    SAMPLE_RATE,
    SPEECH_RECOGNIZERS,
    RecognizerSettings,
    SpeechRecognizer,
    Transcript,
    make_recognizer,
)
from affectcache.extractors.media.audio import decode_audio
from affectcache.extractors.media.decode_memo import MediaNeeds

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

WHISPER_HUB_IDS: Final = {
    "turbo": "openai/whisper-large-v3-turbo", "large-v3-turbo": "openai/whisper-large-v3-turbo",
    "large-v3": "openai/whisper-large-v3", "large-v2": "openai/whisper-large-v2",
    "medium": "openai/whisper-medium", "small": "openai/whisper-small", "base": "openai/whisper-base",
    "tiny": "openai/whisper-tiny"}
"""openai-whisper model names -> the same weights on the Hugging Face hub (transformers backend)."""


@dataclass(frozen=True, kw_only=True)
class WhisperTranscriptConfig(ExtractorConfig):
    """Settings of ``transcript-whisper``. Defaults: openai-whisper ``turbo``, greedy, language detected."""

    batch_size: int = runtime_only(8)
    """transformers backend: 30 s chunks (of one or several items) per batch."""

    backend: str = "openai-whisper"
    """``openai-whisper`` (sequential 30 s seek, word timestamps) or ``transformers`` (batched 30 s chunks,
    for GPU throughput); any key of ``affectcache.extractors.engines.speech.SPEECH_RECOGNIZERS``."""

    model: str = "turbo"
    """openai-whisper model name (``turbo``, ``large-v3``, ...) or ``.pt`` file; for transformers a hub id
    or local folder (the openai names map to the same weights on the hub)."""

    revision: str | None = None
    """Hub revision (transformers backend, hub ids only)."""

    language: str | None = None
    """Spoken language code (``en``); None = detect."""

    task: Literal["transcribe", "translate"] = "transcribe"
    """``transcribe``, or ``translate`` into English."""

    temperatures: tuple[float, ...] = (0.0,)
    """Decoding temperatures tried in order when a window fails Whisper's quality checks; ``[0.0]`` =
    greedy only, deterministic (openai-whisper's own default is 0.0, 0.2, ..., 1.0)."""

    condition_on_previous_text: bool = False
    """openai-whisper: prompt each window with the previous text (off: fewer repetition loops)."""

    word_timestamps: bool = False
    """openai-whisper: word timings per row (attrs ``words``)."""

    no_speech_threshold: float = 0.6
    """Rows with ``no_speech_prob`` above this and ``avg_logprob`` below ``logprob_threshold`` are masked as
    non-speech."""

    logprob_threshold: float = -1.0
    """See ``no_speech_threshold``."""

    max_new_tokens: int = 224
    """Most tokens decoded per 30 s window."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.backend not in SPEECH_RECOGNIZERS:
            problems.append(f"backend must be one of {sorted(SPEECH_RECOGNIZERS)}, got {self.backend!r}")
        if not self.temperatures or any(not 0.0 <= t <= 1.0 for t in self.temperatures):
            problems.append(f"temperatures must be a non-empty list in [0, 1], got {list(self.temperatures)}")
        if self.backend == "transformers" and (self.word_timestamps or self.temperatures != (0.0,)):
            problems.append("backend 'transformers' decodes greedily without word timestamps: set "
                            "temperatures=[0.0] and word_timestamps=false, or use backend 'openai-whisper'")
        if not 0.0 <= self.no_speech_threshold <= 1.0:
            problems.append(f"no_speech_threshold must be in [0, 1], got {self.no_speech_threshold}")
        if not 1 <= self.max_new_tokens <= 444:
            problems.append(f"max_new_tokens must be in [1, 444], got {self.max_new_tokens}")
        return problems

    def recognizer_settings(self) -> RecognizerSettings:
        """Settings for the speech recogniser."""
        model = WHISPER_HUB_IDS.get(self.model, self.model) if self.backend == "transformers" else self.model
        return RecognizerSettings(model=model, revision=self.revision, device=self.device,
                                  language=self.language, task=self.task, temperatures=self.temperatures,
                                  condition_on_previous_text=self.condition_on_previous_text,
                                  word_timestamps=self.word_timestamps, batch_size=self.batch_size,
                                  max_new_tokens=self.max_new_tokens)


@register_extractor
class WhisperTranscriptExtractor(Extractor[WhisperTranscriptConfig]):
    """Whisper transcripts (openai-whisper or transformers), one masked-not-dropped row per segment."""

    name = "transcript-whisper"
    version = "1"
    modality_kind = "text"
    config_type = WhisperTranscriptConfig
    libraries = ("openai-whisper",)
    summary = "Whisper transcript segments (openai-whisper turbo or batched transformers), non-speech masked"

    @classmethod
    def demo_config(cls, workdir: Path) -> WhisperTranscriptConfig:
        from affectcache.extractors.testing.language_standins import tiny_hf_whisper
        from affectcache.extractors.testing.standins import demo_model

        model, stand_in = demo_model(cls.name, lambda: tiny_hf_whisper(workdir / "tiny-whisper"))
        if not stand_in:
            return WhisperTranscriptConfig(backend="transformers", model=model)
        return WhisperTranscriptConfig(backend="transformers", model=model, language="en",
                                       max_new_tokens=12)

    def model_info(self) -> dict[str, Any]:
        settings = self.config.recognizer_settings()
        return model_identity(settings.model, settings.revision)

    def media_needs(self) -> MediaNeeds:
        return MediaNeeds(audio_rates=frozenset({SAMPLE_RATE}))

    def _load(self) -> SpeechRecognizer:
        return make_recognizer(self.config.backend, self.config.recognizer_settings())

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        waves = [decode_audio(it.path, sample_rate=SAMPLE_RATE, start_s=it.start_s, end_s=it.end_s)
                 for it in items]
        recognizer: SpeechRecognizer = self.model
        transcripts = recognizer.transcribe(waves)
        return [self._features(it, len(w) / SAMPLE_RATE, tr)
                for it, w, tr in zip(items, waves, transcripts, strict=True)]

    def _features(self, item: MediaItem, duration_s: float, transcript: Transcript) -> FeatureArray:
        cfg = self.config
        segments = sorted(transcript.segments, key=lambda s: (s.start_s, s.end_s))
        texts = [s.text.strip() for s in segments]
        starts = [min(max(s.start_s, 0.0), duration_s) for s in segments]
        ends = [max(min(s.end_s, duration_s), start) for s, start in zip(segments, starts, strict=True)]
        logprobs = [s.avg_logprob if math.isfinite(s.avg_logprob) else None for s in segments]
        no_speech = [float(s.no_speech_prob) for s in segments]
        mask = [bool(text) and not (ns > cfg.no_speech_threshold
                                    and (lp is None or lp < cfg.logprob_threshold))
                for text, ns, lp in zip(texts, no_speech, logprobs, strict=True)]
        attrs: dict[str, Any] = {"avg_logprob": logprobs, "no_speech_prob": no_speech,
                                 "language": [transcript.language] * len(segments),
                                 "offset_s": item.start_s or 0.0, "duration_s": duration_s,
                                 "detected_language": transcript.language}
        if cfg.word_timestamps:
            attrs["words"] = [[[w.text, w.start_s, w.end_s, w.probability] for w in s.words]
                              for s in segments]
        if not segments:  # nothing recognised: one masked row keeps the item's span on record
            texts, starts, ends, mask = [""], [0.0], [duration_s], [False]
            attrs.update(avg_logprob=[None], no_speech_prob=[1.0], language=[transcript.language])
            if cfg.word_timestamps:
                attrs["words"] = [[]]
        return FeatureArray(video_id=item.video_id, kind="text", values=np.array(texts, dtype=object),
                            start_s=np.array(starts, dtype=np.float64),
                            end_s=np.array(ends, dtype=np.float64), mask=np.array(mask, dtype=bool),
                            attrs=attrs)
