"""Speech recognisers behind one Protocol: openai-whisper and a batched transformers Whisper.

Both take 16 kHz mono float32 waveforms and return :class:`Transcript` objects with the same fields, so the
``transcript-whisper`` extractor does not care which one ran. Both decode deterministically by default
(temperature 0, greedy, no temperature fallback unless configured) and never drop a segment: the
no-speech probability and average log-probability of each segment come back, and the caller decides what
to mask.

* ``openai-whisper``: ``whisper.load_model(name or .pt file)`` and ``model.transcribe`` per waveform (its
  sequential 30 s seek, optional word timestamps). Its own silence skipping is switched off
  (``no_speech_threshold=None``) so that no segment is dropped.
* ``transformers``: ``WhisperForConditionalGeneration``; each waveform is cut into consecutive 30 s
  chunks and the chunks of all waveforms are decoded in batches (GPU throughput). Per chunk: one encoder
  pass; one decoder step on ``<|startoftranscript|>`` gives the no-speech probability and, when no
  language is set, the language; greedy ``generate`` with timestamps; one teacher-forced decoder pass over
  the answer gives the tokens' log-probabilities (``avg_logprob`` is their mean over the chunk's answer, as
  openai-whisper's is per 30 s window). Segments come from the timestamp token pairs. Words spanning a
  chunk boundary may be split (no seek); word timestamps are not available on this backend.

Backends are looked up by name in :data:`SPEECH_RECOGNIZERS`; tests may add fakes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from affectcache.extractors.common.pretrained import from_pretrained_kwargs, resolve_dtype
from affectcache.extractors.core.config import choose_backend
from affectcache.extractors.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16000
"""Whisper's input rate."""
CHUNK_S: Final = 30.0
"""Whisper's window: the transformers backend cuts audio into chunks of this length."""
_TIME_PRECISION: Final = 0.02
"""Seconds per timestamp token."""


@dataclass(frozen=True, kw_only=True)
class Word:
    """One word with its timing (openai-whisper with word timestamps)."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, kw_only=True)
class SpeechSegment:
    """One transcribed segment; times in seconds from the start of the waveform."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    """Mean log-probability of the decoded tokens (of the segment's 30 s decoding window)."""
    no_speech_prob: float
    """Probability of the no-speech token at the start of the segment's decoding window."""
    words: tuple[Word, ...] = ()
    """Word timings, when requested and supported."""


@dataclass(frozen=True, kw_only=True)
class Transcript:
    """Everything recognised in one waveform."""

    language: str | None
    """Language code spoken (detected or as configured)."""
    segments: list[SpeechSegment] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RecognizerSettings:
    """What every speech recogniser needs."""

    model: str
    """openai-whisper: a model name (``turbo``, ``large-v3``...; downloads) or a ``.pt`` file;
    transformers: a hub id or local folder."""
    revision: str | None = None
    """Hub revision (transformers, hub ids only)."""
    device: str = "cpu"
    """Torch device."""
    language: str | None = None
    """Language code (``en``); None = detect per waveform (openai-whisper) or per chunk (transformers)."""
    task: str = "transcribe"
    """``transcribe`` or ``translate`` (to English)."""
    temperatures: tuple[float, ...] = (0.0,)
    """Decoding temperatures tried in order (openai-whisper's fallback); ``(0.0,)`` = greedy only."""
    condition_on_previous_text: bool = False
    """openai-whisper: prompt each window with the previous window's text."""
    word_timestamps: bool = False
    """openai-whisper: word-level timings."""
    batch_size: int = 8
    """transformers: 30 s chunks per batch."""
    max_new_tokens: int = 224
    """Most tokens decoded per 30 s window (openai-whisper's ``sample_len``; its default is 224)."""


class SpeechRecognizer(Protocol):
    """Transcribes 16 kHz mono waveforms."""

    def transcribe(self, waves: Sequence[npt.NDArray[np.float32]]) -> list[Transcript]:
        """One transcript per waveform, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend, model and decoding settings, for provenance."""
        ...


class OpenAIWhisperRecognizer:
    """The ``openai-whisper`` package (``pip install openai-whisper``; see the README for CPU installs)."""

    def __init__(self, settings: RecognizerSettings) -> None:
        try:
            import whisper  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise ConfigError("backend 'openai-whisper' needs the `whisper` extra (pip install "
                              "'affectcache[whisper]', or openai-whisper with --no-deps on CPU); or use "
                              "backend 'transformers'") from exc
        self.settings = settings
        self.model = whisper.load_model(settings.model, device=settings.device)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai-whisper", "model": self.settings.model,
                "temperatures": list(self.settings.temperatures)}

    def transcribe(self, waves: Sequence[npt.NDArray[np.float32]]) -> list[Transcript]:
        s = self.settings
        out = []
        for wave in waves:
            result = self.model.transcribe(
                np.ascontiguousarray(wave, dtype=np.float32), language=s.language, task=s.task,
                temperature=s.temperatures if len(s.temperatures) > 1 else s.temperatures[0],
                condition_on_previous_text=s.condition_on_previous_text, word_timestamps=s.word_timestamps,
                fp16=s.device.startswith("cuda"), verbose=None,
                # Never let whisper drop a window as silence: the extractor masks instead.
                no_speech_threshold=None, sample_len=s.max_new_tokens)
            segments = [SpeechSegment(
                start_s=float(seg["start"]), end_s=max(float(seg["end"]), float(seg["start"])),
                text=str(seg["text"]), avg_logprob=float(seg["avg_logprob"]),
                no_speech_prob=float(seg["no_speech_prob"]),
                words=tuple(Word(text=str(w["word"]), start_s=float(w["start"]), end_s=float(w["end"]),
                                 probability=float(w["probability"])) for w in seg.get("words") or ()))
                for seg in result["segments"]]
            out.append(Transcript(language=result.get("language"), segments=segments))
        return out


class TransformersWhisperRecognizer:
    """A transformers Whisper (``WhisperForConditionalGeneration``), 30 s chunks batched across waveforms."""

    def __init__(self, settings: RecognizerSettings) -> None:
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        if settings.word_timestamps:
            raise ConfigError("word_timestamps needs backend 'openai-whisper'")
        if len(settings.temperatures) != 1 or settings.temperatures[0] != 0.0:
            raise ConfigError("backend 'transformers' decodes greedily only: set temperatures to [0.0]")
        kwargs = from_pretrained_kwargs(settings.model, settings.revision)
        self.settings = settings
        self.device = torch.device(settings.device)
        self.dtype = resolve_dtype("auto", settings.device)
        self.processor = AutoProcessor.from_pretrained(settings.model, **kwargs)
        self.model = WhisperForConditionalGeneration.from_pretrained(settings.model, dtype=self.dtype,
                                                                     **kwargs)
        self.model.to(self.device)
        self.model.eval()
        gen = self.model.generation_config
        tok = self.processor.tokenizer
        self.sot = int(gen.decoder_start_token_id)
        self.eot = int(gen.eos_token_id if not isinstance(gen.eos_token_id, list) else gen.eos_token_id[0])
        self.ts_begin = int(gen.no_timestamps_token_id) + 1
        nospeech = tok.convert_tokens_to_ids("<|nospeech|>")
        if nospeech is None or nospeech == tok.unk_token_id:
            nospeech = tok.convert_tokens_to_ids("<|nocaptions|>")
        self.no_speech_id = int(nospeech)
        self.lang_to_id: dict[str, int] = dict(getattr(gen, "lang_to_id", None) or {})
        self.special_ids = frozenset(int(i) for i in tok.all_special_ids)

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.settings.model, "decoding": "greedy",
                "chunk_s": CHUNK_S}

    def transcribe(self, waves: Sequence[npt.NDArray[np.float32]]) -> list[Transcript]:
        chunk = int(CHUNK_S * SAMPLE_RATE)
        pieces: list[tuple[int, float, npt.NDArray[np.float32]]] = []
        for i, wave in enumerate(waves):
            for start in range(0, max(len(wave), 1), chunk):
                part = wave[start: start + chunk]
                # A tail shorter than 0.1 s holds no word; whisper would hallucinate on it.
                if len(part) >= SAMPLE_RATE // 10 or start == 0:
                    pieces.append((i, start / SAMPLE_RATE, part))
        decoded: list[tuple[str | None, list[SpeechSegment]]] = []
        for b in range(0, len(pieces), self.settings.batch_size):
            decoded += self._decode_batch([p[2] for p in pieces[b: b + self.settings.batch_size]],
                                          [p[1] for p in pieces[b: b + self.settings.batch_size]])
        segments: list[list[SpeechSegment]] = [[] for _ in waves]
        languages: list[list[str]] = [[] for _ in waves]
        for (i, _, _), (lang, segs) in zip(pieces, decoded, strict=True):
            segments[i].extend(segs)
            if lang:
                languages[i].append(lang)
        return [Transcript(language=max(set(langs), key=langs.count) if langs else self.settings.language,
                           segments=segs) for segs, langs in zip(segments, languages, strict=True)]

    def _decode_batch(self, parts: list[npt.NDArray[np.float32]], offsets: list[float]
                      ) -> list[tuple[str | None, list[SpeechSegment]]]:
        import torch

        feats = self.processor.feature_extractor(parts, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        features = feats["input_features"].to(self.device, self.dtype)
        n = features.shape[0]
        with torch.inference_mode():
            encoded = self.model.get_encoder()(features)
            sot = torch.full((n, 1), self.sot, dtype=torch.long, device=self.device)
            first = self.model(encoder_outputs=encoded, decoder_input_ids=sot).logits[:, -1].float()
            no_speech = first.softmax(-1)[:, self.no_speech_id].cpu().numpy()
            languages = self._languages(first)
            sequences = []
            # One language per generate call: group the chunks by language.
            by_lang: dict[str | None, list[int]] = {}
            for j, lang in enumerate(languages):
                by_lang.setdefault(lang, []).append(j)
            out_ids: dict[int, list[int]] = {}
            for lang, rows in by_lang.items():
                idx = torch.tensor(rows, device=self.device)
                sub = type(encoded)(last_hidden_state=encoded.last_hidden_state[idx])
                generated = self.model.generate(
                    encoder_outputs=sub, language=lang, task=self.settings.task, return_timestamps=True,
                    do_sample=False, num_beams=1, max_new_tokens=self.settings.max_new_tokens,
                    attention_mask=torch.ones(len(rows), 1, dtype=torch.long, device=self.device))
                for r, seq in zip(rows, generated.tolist(), strict=True):
                    out_ids[r] = seq
            for j in range(n):
                sequences.append(self._with_prompt(out_ids[j], languages[j]))
            logprobs = self._token_logprobs(encoded, sequences)
        results = []
        for j in range(n):
            prompt_len = len(self._prompt(languages[j]))
            answer = sequences[j][prompt_len:]
            avg = float(np.mean(logprobs[j][prompt_len - 1:])) if len(answer) else float("-inf")
            results.append((languages[j], self._segments(answer, offsets[j], len(parts[j]) / SAMPLE_RATE,
                                                         avg, float(no_speech[j]))))
        return results

    def _languages(self, logits: Any) -> list[str | None]:
        if self.settings.language is not None or not self.lang_to_id:
            return [self.settings.language] * int(logits.shape[0])
        codes = list(self.lang_to_id)
        ids = [self.lang_to_id[c] for c in codes]
        best = logits[:, ids].argmax(-1).tolist()
        return [codes[k].strip("<|>") for k in best]

    def _prompt(self, language: str | None) -> list[int]:
        prompt = [self.sot]
        if language is not None and f"<|{language}|>" in self.lang_to_id:
            prompt.append(self.lang_to_id[f"<|{language}|>"])
        task_ids = getattr(self.model.generation_config, "task_to_id", None) or {}
        if self.settings.task in task_ids:
            prompt.append(int(task_ids[self.settings.task]))
        return prompt

    def _with_prompt(self, generated: list[int], language: str | None) -> list[int]:
        """The generated ids with the decoder prompt in front (transformers may or may not return it)."""
        prompt = self._prompt(language)
        body = generated[len(prompt):] if generated[: len(prompt)] == prompt else list(generated)
        while body and body[0] in prompt:  # leftover forced tokens
            body = body[1:]
        # Trailing padding after the end token is not part of the answer.
        if self.eot in body:
            body = body[: body.index(self.eot) + 1]
        return prompt + body

    def _token_logprobs(self, encoded: Any, sequences: list[list[int]]) -> list[npt.NDArray[np.float64]]:
        """Log-probability of every token after the first, teacher-forced (one decoder pass)."""
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.eot, dtype=torch.long, device=self.device)
        for j, seq in enumerate(sequences):
            ids[j, : len(seq)] = torch.tensor(seq, device=self.device)
        logits = self.model(encoder_outputs=encoded, decoder_input_ids=ids).logits.float()
        logp = logits.log_softmax(-1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].cpu().numpy()
        return [logp[j, : len(seq) - 1].astype(np.float64) for j, seq in enumerate(sequences)]

    def _segments(self, answer: list[int], offset_s: float, length_s: float, avg_logprob: float,
                  no_speech: float) -> list[SpeechSegment]:
        tok = self.processor.tokenizer
        segments: list[SpeechSegment] = []
        start: float | None = None
        text_ids: list[int] = []

        def close(end: float) -> None:
            nonlocal text_ids
            if start is not None and (text_ids or end > start):
                s0 = min(start, length_s)
                segments.append(SpeechSegment(
                    start_s=offset_s + s0, end_s=offset_s + max(min(end, length_s), s0),
                    text=tok.decode(text_ids, skip_special_tokens=True), avg_logprob=avg_logprob,
                    no_speech_prob=no_speech))
            text_ids = []

        for t in answer:
            if t >= self.ts_begin:
                time_s = (t - self.ts_begin) * _TIME_PRECISION
                if start is None:
                    start = time_s
                else:  # an end timestamp; the next segment starts there (or at its own start token)
                    close(time_s)
                    start = time_s
            elif t == self.eot:
                break
            elif t not in self.special_ids:
                text_ids.append(t)
        if text_ids:  # answer ended without a closing timestamp: the segment runs to the chunk end
            if start is None:
                start = 0.0
            close(length_s)
        return segments


SPEECH_RECOGNIZERS: dict[str, Callable[[RecognizerSettings], SpeechRecognizer]] = {
    "openai-whisper": OpenAIWhisperRecognizer,
    "transformers": TransformersWhisperRecognizer,
}
"""Backend name -> recogniser constructor."""


def make_recognizer(backend: str, settings: RecognizerSettings) -> SpeechRecognizer:
    """A speech recogniser by backend name; :class:`ConfigError` listing the backends otherwise."""
    return choose_backend(SPEECH_RECOGNIZERS, backend, "speech-recognition")(settings)
