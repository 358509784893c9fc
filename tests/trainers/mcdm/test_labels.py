"""Task labels from corpus manifests, and MELD's zero-shot mapping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.store.manifest import Manifest
from affectcache.trainers.mcdm.labels import MELD_CLASSES, meld_labels, meld_zero_shot, task_labels


def item(vid: str, corpus: str | None, **labels: Any) -> MediaItem:
    return MediaItem(video_id=vid, path=f"/m/{vid}.mp4", corpus=corpus, labels=labels)


def test_scd_table_columns_are_taken_as_they_are() -> None:
    row = {"Neutral": 0.0, "Anger": 0.25, "Disgust": 0.0, "Fear": 0.0, "Happiness": 0.0, "Sadness": 0.75,
           "Surprise": 0.0, "Other": 0.0}
    items = (item("a", "mosei", **row), item("b", "mosei", **{**row, "Fear": None}))
    labels = task_labels(Manifest(items=items))
    np.testing.assert_allclose(labels.emotion[0], [0, 0.25, 0, 0, 0, 0.75, 0])
    assert np.isnan(labels.emotion[1]).all()
    assert labels.counts() == {"emotion": 1, "personality": 0, "ah": 0}


def test_fiv2_bah_and_meld_rows() -> None:
    traits = {"openness": 0.9, "conscientiousness": 0.8, "extraversion": 0.7, "agreeableness": 0.6,
              "neuroticism": 0.4}
    manifest = Manifest(items=(item("f", "fiv2", **traits), item("b0", "bah", ah=0), item("b1", "bah", ah=1),
                               item("bx", "bah", ah=None), item("e", "meld", emotion="joy")))
    labels = task_labels(manifest)
    np.testing.assert_allclose(labels.personality[0], [0.9, 0.8, 0.7, 0.6, 0.4], rtol=1e-6)  # alias fallback
    np.testing.assert_array_equal(labels.ah[1:3], [0, 1])
    assert np.isnan(labels.ah[[0, 3, 4]]).all()
    assert labels.counts() == {"emotion": 0, "personality": 1, "ah": 2}
    assert meld_labels(manifest).tolist() == [-1, -1, -1, -1, MELD_CLASSES.index("joy")]


def test_unknown_or_missing_corpus_is_refused_naming_the_item() -> None:
    with pytest.raises(ValueError, match=r"item 'x'.*'sewa'.*corpora with labels"):
        task_labels(Manifest(items=(item("x", "sewa"),)))
    with pytest.raises(ValueError, match=r"item 'y' names no corpus"):
        task_labels(Manifest(items=(item("y", None),)))
    assert task_labels(Manifest(items=(item("y", None, ah=1),)), corpus="bah").ah.tolist() == [1.0]


def test_meld_zero_shot_maps_each_mosei_class_to_the_same_emotion() -> None:
    # One-hot logits for MOSEI classes Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise.
    predicted = meld_zero_shot(np.eye(7))
    assert [MELD_CLASSES[i] for i in predicted] == ["neutral", "anger", "disgust", "fear", "joy", "sadness",
                                                    "surprise"]
    with pytest.raises(ValueError, match=r"\(n, 7\)"):
        meld_zero_shot(np.zeros((2, 6)))
