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
    Py2Float64,
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


def test_numpy_scalars_load_as_released_and_as_resaved_by_python3() -> None:
    import numpy as np

    py2 = py2_pickle({"a.mp4": Py2Float64(0.625), "b.mp4": Py2Float64(-1.5e-3), "c.mp4": 0.25})
    assert b"cnumpy.core.multiarray\nscalar\n" in py2
    loaded = load_data_pickle(py2)
    assert loaded == {"a.mp4": 0.625, "b.mp4": -1.5e-3, "c.mp4": 0.25}
    assert all(type(v) is float for v in loaded.values())
    py3 = pickle.dumps({"f": np.float64(0.5), "i": np.int64(-7), "b": np.bool_(True), "raw": b"\x00\xff"},
                       protocol=2)
    assert b"numpy._core.multiarray" in py3 or b"numpy.core.multiarray" in py3
    loaded = load_data_pickle(py3)
    assert loaded == {"f": 0.5, "i": -7, "b": True, "raw": b"\x00\xff"}
    assert [type(loaded[k]) for k in ("f", "i", "b")] == [float, int, bool]


_SCALAR = b"cnumpy.core.multiarray\nscalar\n"
_F8 = b"cnumpy\ndtype\nU\x02f8K\x00K\x01\x87R"
_PLAIN_STATE = b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
_GADGETS = {
    "numpy.load": (b"\x80\x02cnumpy\nload\nU\x08/etc/pwd\x85R.", r"asks for numpy\.load"),
    "object array": (None, r"asks for numpy\.(_core|core)\.multiarray\._reconstruct"),
    "object dtype": (b"\x80\x02cnumpy\ndtype\nU\x01OK\x00K\x01\x87R.", r"numpy\.dtype\('O'"),
    "float32 dtype": (b"\x80\x02cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R.", r"numpy\.dtype\('f4'"),
    "aligned dtype": (b"\x80\x02cnumpy\ndtype\nU\x02f8K\x01K\x01\x87R.", r"numpy\.dtype\('f8', 1, 1\)"),
    "dtype with fields": (b"\x80\x02" + _F8 + b"(K\x03U\x01<NU\x01x\x85}U\x01xNsJ\xff\xff\xff\xff"
                          b"J\xff\xff\xff\xffK\x00tb.", "only plain scalar dtypes"),
    "scalar of a string": (b"\x80\x02" + _SCALAR + b"U\x02f8U\x08\x00\x00\x00\x00\x00\x00\xe0?\x86R.",
                           "not a plain scalar dtype"),
    "scalar of 9 bytes": (b"\x80\x02" + _SCALAR + _F8 + _PLAIN_STATE + b"U\x09" + b"\x00" * 9 + b"\x86R.",
                          "not 8 bytes"),
    "other codec": (b"\x80\x02c_codecs\nencode\nU\x03abcU\x04zlib\x86R.", "only the latin1 encoding"),
    "numpy frombuffer": (b"\x80\x02cnumpy\nfrombuffer\nU\x01x\x85R.", r"asks for numpy\.frombuffer"),
    "builtins getattr": (b"\x80\x02c__builtin__\ngetattr\n.", r"asks for __builtin__\.getattr"),
}


@pytest.mark.parametrize("gadget", sorted(_GADGETS))
def test_numpy_gadgets_and_other_globals_are_refused(gadget: str, tmp_path: Path) -> None:
    import numpy as np

    payload, message = _GADGETS[gadget]
    if payload is None:  # numpy's own pickle of an object array holding a code-running object
        marker = tmp_path / "pwned"
        payload = pickle.dumps(np.array([HostilePayload(marker), 1], dtype=object), protocol=2)
    with pytest.raises(UnsafePickleError, match=message):
        load_data_pickle(payload)
    assert not (tmp_path / "pwned").exists()


def test_a_refused_global_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    marker = tmp_path / "imported"
    (tmp_path / "sentinel_gadget.py").write_text(f"open({str(marker)!r}, 'w').close()\nrun = print\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsafePickleError, match=r"asks for sentinel_gadget\.run"):
        load_data_pickle(b"\x80\x02csentinel_gadget\nrun\nU\x02hi\x85R.")
    assert "sentinel_gadget" not in sys.modules
    assert not marker.exists()
