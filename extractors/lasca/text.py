"""``lasca-text``: one template sentence per window from its salient features (LaScA §3.1, Appendix B.3).

For each window of the stored ``lasca-windows`` modality, Otsu's threshold splits the normalised feature
values into salient and non-salient ones (per modality by default, so facial and acoustic cues are
selected on their own scales; ``otsu_scope="joint"`` splits the concatenated vector as one). The lexicon
labels of the salient features, in feature order (stable), fill the B.3 templates::

    facial:     "<label>, <label>, ... <|endoftext|>"
    audio:      "<label>, ... <|endoftext|>"
    multimodal: "<facial labels> | <audio labels> <|endoftext|>"   (inner end markers stripped)

A modality without valid rows in a window (no face, silence) contributes no labels. The text is a pure
function of the window values, the lexicon and the config, so equal windows always give equal text.
Rows are the windows (text kind); ``mask`` is copied from ``lasca-windows``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.core.provenance import stable_hash
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.lasca.lexicon import FACE_PREFIX, Lexicon, LexiconError, load_lexicon
from affectcache.extractors.lasca.otsu import salient_mask

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

END_OF_TEXT = "<|endoftext|>"
MODALITY_SEPARATOR = " | "
Template = Literal["multimodal", "facial", "audio"]


def unimodal_text(labels: Sequence[str], *, separator: str = ", ") -> str:
    """B.3 eqs. (7)/(8): the labels concatenated, then the end-of-text marker."""
    return f"{separator.join(labels)} {END_OF_TEXT}".lstrip()


def strip_end(text: str) -> str:
    """A unimodal text without its end-of-text marker."""
    return text.removesuffix(END_OF_TEXT).strip()


def multimodal_text(facial: str, audio: str) -> str:
    """B.3 eq. (9): ``strip(facial) | strip(audio) <|endoftext|>``."""
    # An empty side keeps the delimiter (the text still says which modality is silent), without padding.
    return f"{(strip_end(facial) + MODALITY_SEPARATOR + strip_end(audio)).strip()} {END_OF_TEXT}"


@functools.lru_cache(maxsize=8)
def _lexicon(name: str, version: int) -> Lexicon:
    return load_lexicon(name, version)


@dataclass(frozen=True, kw_only=True)
class LascaTextConfig(ExtractorConfig):
    """Settings of the ``lasca-text`` extractor."""

    lexicon: str = "lasca-paper"
    """Lexicon name (``affectcache lexicon list``): ``lasca-paper``, ``feature-name`` or a generated one."""

    lexicon_version: int = 1
    """Lexicon version; its content hash goes into the fingerprint."""

    template: Template = "multimodal"
    """Which B.3 template: ``multimodal`` (facial | audio), ``facial`` or ``audio`` only."""

    otsu_scope: Literal["modality", "joint"] = "modality"
    """Otsu split per modality's features (``modality``) or over the whole window vector (``joint``)."""

    otsu_bins: int = 256
    """Histogram bins of the Otsu threshold."""

    separator: str = ", "
    """Between labels of one modality (the paper's examples use a comma and a space)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.otsu_bins < 2:
            problems.append(f"otsu_bins must be >= 2, got {self.otsu_bins}")
        try:
            _lexicon(self.lexicon, self.lexicon_version)
        except LexiconError as exc:
            problems.append(str(exc))
        return problems


@register_extractor
class LascaTextExtractor(Extractor[LascaTextConfig]):
    """Template text of each window's salient features, from a fixed lexicon."""

    name = "lasca-text"
    version = "1"
    modality_kind = "text"
    config_type = LascaTextConfig
    requires = ("lasca-windows",)
    summary = "LaScA window text: Otsu-salient features -> lexicon labels -> B.3 template"

    @property
    def lexicon(self) -> Lexicon:
        """The configured lexicon."""
        return _lexicon(self.config.lexicon, self.config.lexicon_version)

    def model_info(self) -> dict[str, Any]:
        return {"id": f"lexicon:{self.lexicon.ref}", "revision": str(self.lexicon.version),
                "sha256": self.lexicon.sha256}

    def fingerprint(self, upstream_fingerprints: Mapping[str, str] | None = None) -> str:
        # The lexicon's content is an input like the config: chain it so everything built on this text
        # (embeddings, trained models) goes stale if a lexicon file is ever replaced.
        base = super().fingerprint(upstream_fingerprints)
        return stable_hash({"base": base, "lexicon": self.lexicon.sha256})

    def _load(self) -> Lexicon:
        return self.lexicon

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        windows = upstream["lasca-windows"]
        features = [str(f) for f in windows.attrs["features"]]
        lexicon: Lexicon = self.model
        missing = lexicon.missing(features)
        if missing:
            raise LexiconError(f"lexicon {lexicon.ref} has no labels for {missing}")
        face_valid = np.asarray(windows.attrs.get("face_valid", [True] * windows.n_rows), bool)
        audio_valid = np.asarray(windows.attrs.get("audio_valid", [True] * windows.n_rows), bool)
        rows = windows.values.astype(np.float64)
        texts = [self.window_text(row, features, bool(fv), bool(av))
                 for row, fv, av in zip(rows, face_valid, audio_valid, strict=True)]
        return FeatureArray(video_id=item.video_id, kind="text", values=np.asarray(texts, dtype=object),
                            start_s=windows.start_s, end_s=windows.end_s, mask=windows.mask,
                            attrs={"lexicon": lexicon.ref, "template": self.config.template})

    def window_text(self, values: npt.NDArray[np.float64], features: Sequence[str], face_valid: bool = True,
                    audio_valid: bool = True) -> str:
        """The template text of one window's normalised feature values."""
        cfg = self.config
        is_face = np.asarray([f.startswith(FACE_PREFIX) for f in features])
        salient = np.zeros(len(features), bool)
        if cfg.otsu_scope == "joint":
            salient = salient_mask(values, nbins=cfg.otsu_bins)
        else:
            for part in (is_face, ~is_face):
                if part.any():
                    salient[part] = salient_mask(values[part], nbins=cfg.otsu_bins)
        salient &= np.where(is_face, face_valid, audio_valid)
        labels = [self.lexicon.label(f) for f in features]
        facial = unimodal_text([labels[i] for i in np.flatnonzero(salient & is_face)],
                               separator=cfg.separator)
        audio = unimodal_text([labels[i] for i in np.flatnonzero(salient & ~is_face)],
                              separator=cfg.separator)
        if cfg.template == "facial":
            return facial
        if cfg.template == "audio":
            return audio
        return multimodal_text(facial, audio)
