"""FIv2 adapter and the restricted unpickler: Python 2 latin1 pickles load, hostile pickles run nothing."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

import pytest

from affectcache.store.corpora.base import CorpusError, import_corpus, read_corpus
from affectcache.store.corpora.safe_pickle import UnsafePickleError, load_data_pickle, repair_utf8
from affectcache.store.zarr_store import FeatureStore
from tests.store.corpora.corpus_fixtures import (
    FIV2_TRAITS,
    HostilePayload,
    corpus_clip,
    py2_pickle,
    write_fiv2,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["corpus_clip"]


def test_python2_pickles_load_with_latin1_and_utf8_text_is_repaired() -> None:
    raw = py2_pickle({"caf\u00e9.mp4": "se\u00f1or", "x": 0.5})
    assert b"U\tcaf\xc3\xa9.mp4" in raw  # a Python 2 byte string, not a unicode opcode
    loaded = load_data_pickle(raw)
    assert "caf\u00c3\u00a9.mp4" in loaded  # what latin1 decoding of UTF-8 bytes gives
    assert {repair_utf8(k): v for k, v in loaded.items()} == {"caf\u00e9.mp4": "se\u00c3\u00b1or", "x": 0.5}
    assert repair_utf8(loaded["caf\u00c3\u00a9.mp4"]) == "se\u00f1or"
    assert repair_utf8("d\u00e9j\u00e0") == "d\u00e9j\u00e0"  # genuine Latin-1 text stays as it is
    assert load_data_pickle(pickle.dumps({"a": [1, 2.5, (3, None)], "s": {1, 2}}, protocol=2)) == \
        {"a": [1, 2.5, (3, None)], "s": {1, 2}}


def test_a_hostile_pickle_is_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"extraversion": HostilePayload(marker)}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"asks for (posix|os)\.system"):
        load_data_pickle(payload)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        load_data_pickle(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.")


def test_annotations_and_transcripts_import(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_fiv2(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    result = read_corpus("fiv2", root)
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["LNM1i-a9q_A.005", "Val_clip.001", "zzZ-0001.002"]
    first = items["LNM1i-a9q_A.005"]
    assert first.split == "train"
    assert items["Val_clip.001"].split == "val"
    assert [first.labels[t] for t in FIV2_TRAITS] == pytest.approx([0.5 + 0.01 * k for k in range(6)])
    assert first.labels["non-neuroticism"] == first.labels["neuroticism"]
    import_corpus("fiv2", root, tmp_path / "m.jsonl", store=store)
    fs = FeatureStore(store, read_only=True)
    text = fs.read("transcript", "LNM1i-a9q_A.005")
    assert list(text.values) == ["Caf\u00e9 au lait, se\u00f1or"]
    assert text.start_s[0] == 0.0
    assert text.end_s[0] == pytest.approx(0.8, abs=0.05)
    assert list(fs.read("transcript", "Val_clip.001").values) == ["na\u00efve \u00fcn\u00efcode"]


def test_hostile_annotation_file_refuses_the_corpus(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_fiv2(tmp_path, corpus_clip)
    marker = tmp_path / "pwned"
    (root / "annotation_validation.pkl").write_bytes(
        pickle.dumps({t: {"Val_clip.001.mp4": HostilePayload(marker)} for t in FIV2_TRAITS}, protocol=2))
    result = read_corpus("fiv2", root)
    (error,) = result.errors
    assert str(error).startswith("annotation_validation.pkl: error: refused: the pickle asks for")
    assert not marker.exists()
    with pytest.raises(CorpusError, match="refused"):
        import_corpus("fiv2", root, tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_missing_and_out_of_range_scores_are_reported(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_fiv2(tmp_path, corpus_clip)
    ann = {t: {"LNM1i-a9q_A.005.mp4": 1.5 if t == "openness" else 0.5} for t in FIV2_TRAITS}
    del ann["interview"]["LNM1i-a9q_A.005.mp4"]
    ann["interview"]["ghost.001.mp4"] = 0.5
    (root / "annotation_training.pkl").write_bytes(py2_pickle(ann))
    result = read_corpus("fiv2", root)
    text = [str(p) for p in result.problems]
    assert any("openness 1.5 is not a number in [0, 1]" in t for t in text)
    assert any("has no interview score" in t for t in text)
    assert any("ghost.001" in t and "label without media" in t for t in text)
    assert any("zzZ-0001.002.mp4" in t and "media file without labels" in t for t in text)
    first = next(i for i in result.items if i.video_id == "LNM1i-a9q_A.005")
    assert first.labels["openness"] is None
    assert first.labels["interview"] is None
