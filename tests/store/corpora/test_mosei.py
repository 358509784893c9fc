"""CMU-MOSEI adapter: SDK .csd labels + folds + timestamped words, and SCD-MMPSR's CSV tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.store.corpora.base import import_corpus, read_corpus
from affectcache.store.zarr_store import FeatureStore
from tests.store.corpora.corpus_fixtures import MOSEI_LABELS, corpus_clip, write_mosei_csd, write_mosei_csv

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["corpus_clip"]


def test_csd_labels_become_utterance_clips_with_folds_and_7_values(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_mosei_csd(tmp_path, corpus_clip)
    result = read_corpus("mosei", root)
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["-3g5yACwYnA_0.0000_0.3000", "-3g5yACwYnA_0.3000_0.7000",
                             "abc_DEF-12_0.1000_0.6000"]
    first = items["-3g5yACwYnA_0.3000_0.7000"]
    assert (first.start_s, first.end_s, first.split, first.subject) == (0.3, 0.7, "train", "-3g5yACwYnA")
    assert first.path.endswith("Videos/-3g5yACwYnA.mp4")
    want = MOSEI_LABELS["-3g5yACwYnA"][0][1]
    assert [first.labels[k] for k in ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")] \
        == pytest.approx(want)
    assert items["abc_DEF-12_0.1000_0.6000"].split == "val"


def test_timestamped_words_become_per_utterance_transcripts(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_mosei_csd(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    report = import_corpus("mosei", root, tmp_path / "m.csv", store=store)
    assert report.n_transcripts == 2
    fs = FeatureStore(store, read_only=True)
    prov = fs.provenance("transcript")
    assert (prov["extractor"], prov["modality_kind"], prov["upstream"]) == ("corpus-transcript", "text", {})
    assert prov["config"] == {"corpus": "mosei", "source_files": ["CMU_MOSEI_TimestampedWords.csd"]}
    first = fs.read("transcript", "-3g5yACwYnA_0.0000_0.3000")
    assert list(first.values) == ["hello", "café"]  # the 'sp' pause is dropped
    np.testing.assert_allclose(first.start_s, [0.0, 0.2])
    second = fs.read("transcript", "-3g5yACwYnA_0.3000_0.7000")
    assert list(second.values) == ["world"]


def test_out_of_range_values_missing_folds_and_missing_media(tmp_path: Path, corpus_clip: Path) -> None:
    labels = {"-3g5yACwYnA": ([[4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], [[0.0, 0.3]]),
              "no_media_vid": ([[0.0] * 7], [[0.0, 1.0]])}
    root = write_mosei_csd(tmp_path, corpus_clip, folds=False, words=False, labels=labels)
    result = read_corpus("mosei", root)
    text = [str(p) for p in result.problems]
    assert any("cmu_mosei_std_folds.py" in t for t in text)
    assert any(t.startswith("CMU_MOSEI_Labels.csd[data/-3g5yACwYnA]:1: warning: sentiment 4") for t in text)
    assert any("data/no_media_vid" in t and "label without media" in t for t in text)
    assert any("abc_DEF-12.mp4" in t and "media file without labels" in t for t in text)
    (item,) = result.items
    assert item.labels["sentiment"] is None
    assert item.split is None


def test_scd_csv_tables_give_the_same_ids_and_their_text(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_mosei_csv(tmp_path, corpus_clip)
    result = read_corpus("mosei", root)
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["-3g5yACwYnA_0.0000_0.3000", "abc_DEF-12_0.1000_0.6000"]
    assert items["-3g5yACwYnA_0.0000_0.3000"].split == "val"
    assert items["-3g5yACwYnA_0.0000_0.3000"].labels["Anger"] == 0.5
    texts = {t.video_id: t.text for t in result.transcripts}
    assert texts["-3g5yACwYnA_0.0000_0.3000"] == ("well, I think so",)


def test_a_slightly_negative_start_is_clamped_with_a_warning_and_the_rest_imports(
        tmp_path: Path, corpus_clip: Path) -> None:
    # As released: some CMU label intervals start before the video (CMU-MultimodalSDK reports -0.4776).
    labels = {"-3g5yACwYnA": ([[1.0] + [0.0] * 6, [-1.0] + [0.0] * 6, [0.5] + [0.0] * 6],
                              [[-0.4776, 0.3], [0.3, 0.7], [-0.9, -0.2]]),
              "abc_DEF-12": MOSEI_LABELS["abc_DEF-12"]}
    root = write_mosei_csd(tmp_path, corpus_clip, words=False, labels=labels)
    result = read_corpus("mosei", root)
    problems = [str(p) for p in result.problems]
    assert "CMU_MOSEI_Labels.csd[data/-3g5yACwYnA]:1: warning: interval [-0.4776, 0.3] starts before the " \
           "video; start clamped to 0" in problems
    # A segment wholly before the video is no clip at all: still refused, naming it.
    assert [str(e) for e in result.errors] == [
        "CMU_MOSEI_Labels.csd[data/-3g5yACwYnA]:3: error: interval [-0.9, -0.2] is not a clip "
        "(0 <= start < end)"]
    del labels["-3g5yACwYnA"][0][2], labels["-3g5yACwYnA"][1][2]
    root = write_mosei_csd(tmp_path, corpus_clip, words=False, labels=labels)
    result = read_corpus("mosei", root)
    assert result.errors == []
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["-3g5yACwYnA_0.0000_0.3000", "-3g5yACwYnA_0.3000_0.7000",
                             "abc_DEF-12_0.1000_0.6000"]
    clamped = items["-3g5yACwYnA_0.0000_0.3000"]
    assert (clamped.start_s, clamped.end_s, clamped.labels["sentiment"]) == (0.0, 0.3, 1.0)
    import_corpus("mosei", root, tmp_path / "m.csv")  # warnings only: the import goes through
    assert (tmp_path / "m.csv").exists()
