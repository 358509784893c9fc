"""Task labels of MCDM's corpora, read from the manifests the corpus adapters write.

Every manifest item gets all three tasks' labels, NaN where its corpus does not annotate the task (a
label is either whole or NaN: a vector with a missing element becomes all-NaN). The reader is chosen
by the item's ``corpus`` column (or the corpus named by the caller); readers are registered by name:

* ``mosei`` — emotion ``[7]`` in the authors' order (Neutral, Anger, Disgust, Fear, Happiness, Sadness,
  Surprise). From SCD-MMPSR's tables the normalised columns are taken as they are ("Other" is dropped,
  as the authors' loader does). From the CMU SDK's intensities (happy, sad, anger, surprise, disgust,
  fear in [0, 3]) the vector is built the way SCD's tables were: Neutral = 1 when all six are 0, then
  the row is normalised to sum 1. Training uses its argmax, the metrics its positive entries.
* ``fiv2`` — personality ``[5]``: openness, conscientiousness, extraversion, agreeableness,
  non-neuroticism (the adapter's alias of the corpus's ``neuroticism`` score, not inverted).
* ``bah`` — ``ah``: 0/1 (1 = ambivalence/hesitancy present).
* ``meld`` — none of the three (MELD is zero-shot evaluation only); its ``emotion`` names are read by
  :func:`meld_labels`.

MELD zero-shot: MOSEI's emotion head predicts one of its 7 classes (argmax of the logits; MELD is
single-label, so MOSEI's multi-label neutral rule does not apply), renamed to MELD's class of the same
emotion — Neutral→neutral, Happiness→joy, Surprise→surprise, Anger→anger, Sadness→sadness,
Disgust→disgust, Fear→fear. The two label sets are the same seven emotions, so the map is one-to-one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from affectcache.store.corpora.fiv2 import SCD_ALIASES
from affectcache.store.corpora.mosei import CSV_EMOTIONS
from affectcache.trainers.mcdm.model import EMOTION_CLASSES, PERSONALITY_TRAITS

if TYPE_CHECKING:
    from affectcache.extractors.core.records import MediaItem
    from affectcache.store.manifest import Manifest

logger = logging.getLogger(__name__)

SDK_EMOTIONS: dict[str, str] = {"Anger": "anger", "Disgust": "disgust", "Fear": "fear", "Happiness": "happy",
                                "Sadness": "sad", "Surprise": "surprise"}
"""MOSEI SDK label column of each non-neutral class."""
MELD_CLASSES: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
"""MELD's emotions, in the order of its papers and loaders (class index = position)."""
MOSEI_TO_MELD: dict[str, str] = {"Neutral": "neutral", "Anger": "anger", "Disgust": "disgust", "Fear": "fear",
                                 "Happiness": "joy", "Sadness": "sadness", "Surprise": "surprise"}
"""MOSEI emotion class → MELD emotion class (zero-shot)."""


@dataclass(frozen=True)
class ItemLabels:
    """One item's labels; None where its corpus does not annotate the task."""

    emotion: tuple[float, ...] | None = None
    personality: tuple[float, ...] | None = None
    ah: float | None = None


LabelReader = Callable[["MediaItem"], ItemLabels]
LABEL_READERS: dict[str, LabelReader] = {}
"""Corpus name → label reader."""


def register_label_reader(corpus: str) -> Callable[[LabelReader], LabelReader]:
    """Register the label reader of a corpus (the name its adapter writes in the ``corpus`` column)."""
    def wrap(reader: LabelReader) -> LabelReader:
        LABEL_READERS[corpus] = reader
        return reader
    return wrap


def _numbers(labels: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[float, ...] | None:
    values = [labels.get(k) for k in keys]
    if any(isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values)  # type: ignore[arg-type]


@register_label_reader("mosei")
def _mosei(item: MediaItem) -> ItemLabels:
    labels = item.labels
    scd_columns = CSV_EMOTIONS[: len(EMOTION_CLASSES)]
    if any(c in labels for c in scd_columns):
        return ItemLabels(emotion=_numbers(labels, scd_columns))
    intensities = _numbers(labels, tuple(SDK_EMOTIONS[c] for c in EMOTION_CLASSES[1:]))
    if intensities is None:
        return ItemLabels()
    vector = np.array([float(not any(intensities)), *intensities])
    return ItemLabels(emotion=tuple((vector / vector.sum()).tolist()))


@register_label_reader("fiv2")
def _fiv2(item: MediaItem) -> ItemLabels:
    labels = dict(item.labels)
    for alias, trait in SCD_ALIASES.items():
        labels.setdefault(alias, labels.get(trait))
    return ItemLabels(personality=_numbers(labels, PERSONALITY_TRAITS))


@register_label_reader("bah")
def _bah(item: MediaItem) -> ItemLabels:
    value = item.labels.get("ah")
    return ItemLabels(ah=float(value) if value in (0, 1) and not isinstance(value, bool) else None)


@register_label_reader("meld")
def _meld(item: MediaItem) -> ItemLabels:
    return ItemLabels()


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskLabels:
    """Labels of ``n`` items, NaN where unlabelled."""

    emotion: npt.NDArray[np.float32]
    """(n, 7) MOSEI emotion vectors."""
    personality: npt.NDArray[np.float32]
    """(n, 5) trait scores."""
    ah: npt.NDArray[np.float32]
    """(n,) 0/1."""

    @classmethod
    def empty(cls, n: int) -> TaskLabels:
        """All-NaN labels for ``n`` items."""
        return cls(emotion=np.full((n, len(EMOTION_CLASSES)), np.nan, np.float32),
                   personality=np.full((n, len(PERSONALITY_TRAITS)), np.nan, np.float32),
                   ah=np.full(n, np.nan, np.float32))

    def counts(self) -> dict[str, int]:
        """Labelled items per task."""
        return {"emotion": int(np.isfinite(self.emotion).all(1).sum()),
                "personality": int(np.isfinite(self.personality).all(1).sum()),
                "ah": int(np.isfinite(self.ah).sum())}

    @classmethod
    def concatenate(cls, parts: list[TaskLabels]) -> TaskLabels:
        """Rows of several label sets, in order."""
        return cls(emotion=np.concatenate([p.emotion for p in parts]),
                   personality=np.concatenate([p.personality for p in parts]),
                   ah=np.concatenate([p.ah for p in parts]))


def reader_for(corpus: str | None, video_id: str) -> LabelReader:
    """The registered reader of ``corpus`` (a one-line error naming the item and the choices otherwise)."""
    if corpus is None:
        raise ValueError(f"item {video_id!r} names no corpus: write the manifest with `affectcache manifest "
                         f"<corpus>` or pass corpus= (one of {sorted(LABEL_READERS)})")
    try:
        return LABEL_READERS[corpus]
    except KeyError:
        raise ValueError(f"item {video_id!r}: no task labels for corpus {corpus!r}; "
                         f"corpora with labels: {sorted(LABEL_READERS)}") from None


def task_labels(manifest: Manifest, corpus: str | None = None) -> TaskLabels:
    """Every item's task labels (NaN where unlabelled); ``corpus`` overrides the items' column."""
    out = TaskLabels.empty(len(manifest))
    for row, item in enumerate(manifest):
        labels = reader_for(corpus or item.corpus, item.video_id)(item)
        if labels.emotion is not None:
            out.emotion[row] = labels.emotion
        if labels.personality is not None:
            out.personality[row] = labels.personality
        if labels.ah is not None:
            out.ah[row] = labels.ah
    logger.info("%s: labelled items per task %s of %d", corpus or "manifest", out.counts(), len(manifest))
    return out


def meld_labels(manifest: Manifest) -> npt.NDArray[np.int64]:
    """MELD class index per item (:data:`MELD_CLASSES`), -1 where the emotion is missing."""
    index = {name: i for i, name in enumerate(MELD_CLASSES)}
    return np.array([index.get(str(item.labels.get("emotion")), -1) for item in manifest], dtype=np.int64)


def meld_zero_shot(emotion_logits: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """MELD class indices predicted from MOSEI emotion logits ``[n, 7]`` (see the module docstring)."""
    logits = np.asarray(emotion_logits)
    if logits.ndim != 2 or logits.shape[1] != len(EMOTION_CLASSES):
        raise ValueError(f"expected MOSEI emotion logits of shape (n, {len(EMOTION_CLASSES)}), "
                         f"got {logits.shape}")
    mapping = np.array([MELD_CLASSES.index(MOSEI_TO_MELD[c]) for c in EMOTION_CLASSES], dtype=np.int64)
    predicted: npt.NDArray[np.int64] = mapping[logits.argmax(axis=1)]
    return predicted
