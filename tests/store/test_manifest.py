"""Tests of ``affectcache.store.manifest``: loading, validation, selection, writing and the digest."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from pathlib import Path

import pytest

from affectcache.extractors.core.records import MediaItem
from affectcache.store.errors import ManifestError, StoreError
from affectcache.store.manifest import (
    MANIFEST_SUFFIXES,
    Manifest,
    load_manifest,
    manifest_digest,
    parse_csv_label,
    write_manifest,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "data_manifests"

HEADER = "video_id,path,split,start_s,end_s,emotion,valence\n"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (gzip-compressed when the name ends in ``.gz``)."""
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def jsonl(*rows: object) -> str:
    """JSONL text of ``rows`` (each dumped as is)."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def load_error(path: Path) -> str:
    """Load ``path`` expecting a ManifestError; return its message."""
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return str(info.value)


def sample_items(media: Path) -> list[MediaItem]:
    """Four items covering clips, labels of every type and a MOSEI-style id.

    Every item has every label key (a loaded manifest fills absent labels with None), and no value
    has surrounding whitespace (CSV strips cells), so the items survive a round trip in every format.
    """
    return [
        MediaItem(video_id="a1", path=str(media / "a1.mp4"), split="train", subject="007", corpus="demo",
                  labels={"emotion": "happy", "valence": 0.5, "count": 3, "note": None}),
        MediaItem(video_id="-3g5yACwYnA_1", path=str(media / "mosei" / "-3g5yACwYnA.mp4"), start_s=1.5,
                  end_s=4.25, split="test",
                  labels={"emotion": "sad", "valence": -1.0, "count": -2, "note": None}),
        MediaItem(video_id="-3g5yACwYnA_2", path=str(media / "mosei" / "-3g5yACwYnA.mp4"), start_s=4.25,
                  end_s=9.0, split="test",
                  labels={"emotion": None, "valence": 1e-3, "count": 0, "note": "x"}),
        MediaItem(video_id="b.2", path=str(media / "b 2.mp4"), end_s=3.0, split="val",
                  labels={"emotion": "a, \"quoted\"\nmultiline", "valence": None, "count": None,
                          "note": "two words"}),
    ]


# ---- examples ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["example.csv", "example.jsonl"])
def test_examples_load(name: str) -> None:
    manifest = load_manifest(EXAMPLES / name)
    assert 3 <= len(manifest) <= 4
    assert manifest.source == EXAMPLES / name
    assert any(item.video_id.startswith("-") for item in manifest)
    assert any(item.start_s is not None and item.end_s is not None for item in manifest)
    assert all(os.path.isabs(item.path) and item.path.startswith(str(EXAMPLES)) for item in manifest)
    assert manifest.label_columns == ("emotion", "valence", "arousal")


def test_examples_are_the_same_manifest() -> None:
    csv_manifest = load_manifest(EXAMPLES / "example.csv")
    jsonl_manifest = load_manifest(EXAMPLES / "example.jsonl")
    assert csv_manifest.items == jsonl_manifest.items
    assert manifest_digest(csv_manifest) == manifest_digest(jsonl_manifest)


# ---- loading -------------------------------------------------------------------------------------
def test_csv_values_and_relative_paths(tmp_path: Path) -> None:
    sub = tmp_path / "lists"
    sub.mkdir()
    abs_media = tmp_path / "elsewhere" / "x.mp4"
    path = write_text(sub / "m.csv", HEADER
                      + "v1,media/v1.mp4,train,,,happy,0.25\n"
                      + f"v2,{abs_media},test,1,2.5,,-3\n"
                      + "v3,../up/v3.mp4,, 0.5 ,, 007 , 1e-3\n"
                      + "v4,https://example.org/v4.mp4,,,,nan,true\n")
    manifest = load_manifest(path)
    assert manifest.ids() == ["v1", "v2", "v3", "v4"]
    assert manifest.source == path
    assert manifest.label_columns == ("emotion", "valence")
    v1, v2, v3, v4 = manifest.items
    assert v1.path == str(sub / "media" / "v1.mp4")
    assert v2.path == str(abs_media)
    assert v3.path == str(tmp_path / "up" / "v3.mp4")  # ".." normalised
    assert v4.path == "https://example.org/v4.mp4"
    assert (v1.split, v1.start_s, v1.end_s) == ("train", None, None)
    assert (v2.start_s, v2.end_s) == (1.0, 2.5)
    assert (v3.split, v3.start_s, v3.end_s) == (None, 0.5, None)
    assert v1.labels == {"emotion": "happy", "valence": 0.25}
    assert v2.labels == {"emotion": None, "valence": -3}
    assert type(v2.labels["valence"]) is int
    assert v3.labels == {"emotion": "007", "valence": 0.001}
    assert v4.labels == {"emotion": "nan", "valence": "true"}


def test_relative_manifest_path_resolves_against_manifest_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    write_text(tmp_path / "d" / "m.jsonl", jsonl({"video_id": "v", "path": "clip.mp4"}))
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest("d/m.jsonl")
    assert manifest.source == tmp_path / "d" / "m.jsonl"
    assert manifest.get("v").path == str(tmp_path / "d" / "clip.mp4")


@pytest.mark.parametrize(("cell", "expected"), [
    ("", None), ("  ", None), ("3", 3), ("-12", -12), ("+4", 4), ("0", 0), ("0.5", 0.5), ("2.", 2.0),
    (".5", 0.5), ("1e-3", 0.001), ("-1.5E2", -150.0), ("007", "007"), ("nan", "nan"), ("inf", "inf"),
    ("1_000", "1_000"), ("true", "true"), (" happy ", "happy"), ("1e999", "1e999"), ("0x10", "0x10"),
])
def test_parse_csv_label(cell: str, expected: object) -> None:
    value = parse_csv_label(cell)
    assert value == expected
    assert type(value) is type(expected)


def test_jsonl_values_taken_as_given(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.jsonl", jsonl(
        {"video_id": "v1", "path": "a.mp4", "flag": True, "n": 3, "x": 0.5, "s": "3"},
        {"video_id": "v2", "path": "b.mp4", "start_s": 2, "end_s": 3.5, "extra": "only here"},
    ) + "\n   \n")
    manifest = load_manifest(path)
    v1, v2 = manifest.items
    assert manifest.label_columns == ("flag", "n", "x", "s", "extra")
    assert v1.labels == {"flag": True, "n": 3, "x": 0.5, "s": "3", "extra": None}
    assert v2.labels == {"flag": None, "n": None, "x": None, "s": None, "extra": "only here"}
    assert (v2.start_s, v2.end_s) == (2.0, 3.5)
    assert isinstance(v2.start_s, float)


def test_csv_bom_crlf_and_quoted_multiline(tmp_path: Path) -> None:
    text = '\r\nvideo_id,path,note\r\nv1,a.mp4,"two\r\nlines"\r\n\r\nv2,b.mp4,plain\r\n'
    path = tmp_path / "m.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    manifest = load_manifest(path)
    assert manifest.ids() == ["v1", "v2"]
    assert manifest.get("v1").labels["note"] == "two\r\nlines"


def test_line_numbers_follow_multiline_cells_and_blank_lines(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv",
                      'video_id,path,note\nv1,a.mp4,"x\ny"\n\nv1,b.mp4,z\n')
    msg = load_error(path)
    assert re.search(r"line 5, column 'video_id': duplicate video_id 'v1' \(first on line 2\)", msg)


# ---- validation errors ---------------------------------------------------------------------------
def test_missing_required_column_csv(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,Path,split\nv1,a.mp4,train\n")
    msg = load_error(path)
    assert str(path) in msg
    assert "line 1: missing required column 'path'" in msg
    assert "the header has 'Path'; rename it to 'path'" in msg


def test_missing_required_value_csv(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path\nv1,\n,b.mp4\nv3,c.mp4\n")
    msg = load_error(path)
    assert "2 problems" in msg
    assert "line 2 (video_id 'v1'), column 'path': missing value in required column" in msg
    assert "line 3, column 'video_id': missing value in required column" in msg


def test_missing_required_key_jsonl(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.jsonl", jsonl({"video_id": "v1"}, {"path": "b.mp4"}))
    msg = load_error(path)
    assert "line 1 (video_id 'v1'), column 'path': missing required column" in msg
    assert "line 2, column 'video_id': missing required column" in msg


@pytest.mark.parametrize("bad_id", ["../x", "a/b", ".hidden", "..", "a b", "x\\y", "é", "a" * 201])
def test_hostile_video_ids_refused(tmp_path: Path, bad_id: str) -> None:
    path = write_text(tmp_path / "m.jsonl", jsonl({"video_id": "ok", "path": "a.mp4"},
                                                   {"video_id": bad_id, "path": "b.mp4"}))
    msg = load_error(path)
    assert "line 2, column 'video_id': invalid video id" in msg
    assert repr(bad_id) in msg


def test_hostile_video_id_csv_and_mosei_id_accepted(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path\n-3g5yACwYnA,a.mp4\n../x,b.mp4\n")
    msg = load_error(path)
    assert "1 problem " in msg
    assert "line 3, column 'video_id': invalid video id '../x'" in msg
    assert "-3g5yACwYnA" not in msg


def test_non_string_video_id_jsonl(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.jsonl", jsonl({"video_id": 123, "path": "a.mp4"}))
    assert "line 1, column 'video_id': video id must be a string, got int" in load_error(path)


def test_duplicate_video_id_names_both_rows(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path\nv1,a.mp4\nv2,b.mp4\nv1,c.mp4\nv1,d.mp4\n")
    msg = load_error(path)
    assert "line 4, column 'video_id': duplicate video_id 'v1' (first on line 2)" in msg
    assert "line 5, column 'video_id': duplicate video_id 'v1' (first on line 2)" in msg


def test_duplicate_reported_even_when_row_has_other_problems(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path,end_s\nv1,a.mp4,\nv1,,-1\n")
    msg = load_error(path)
    assert "3 problems" in msg
    assert "line 3, column 'video_id': duplicate video_id 'v1' (first on line 2)" in msg
    assert "line 3 (video_id 'v1'), column 'path': missing value" in msg
    assert "line 3 (video_id 'v1'), column 'end_s': -1 is negative" in msg


@pytest.mark.parametrize(("start", "end", "column", "fragment"), [
    ("abc", "", "start_s", "'abc' is not a number"),
    ("", "1_0", "end_s", "'1_0' is not a number"),
    ("-1", "", "start_s", "-1 is negative"),
    ("", "-0.5", "end_s", "-0.5 is negative"),
    ("nan", "", "start_s", "'nan' is not a finite number"),
    ("", "inf", "end_s", "'inf' is not a finite number"),
    ("3", "3", "end_s", "end_s (3) must be greater than start_s (3)"),
    ("5", "2", "end_s", "end_s (2) must be greater than start_s (5)"),
    ("", "0", "end_s", "empty start_s counts as 0"),
])
def test_bad_clip_bounds_csv(tmp_path: Path, start: str, end: str, column: str, fragment: str) -> None:
    path = write_text(tmp_path / "m.csv",
                      f"video_id,path,start_s,end_s\nok,a.mp4,1,2\nclip7,a.mp4,{start},{end}\n")
    msg = load_error(path)
    assert f"line 3 (video_id 'clip7'), column '{column}': " in msg
    assert fragment in msg


@pytest.mark.parametrize(("row", "column", "fragment"), [
    ({"start_s": "1.5"}, "start_s", "must be a number of seconds or null, got a string"),
    ({"end_s": True}, "end_s", "got a boolean"),
    ({"start_s": -2}, "start_s", "-2 is negative"),
    ({"start_s": 4, "end_s": 1.5}, "end_s", "end_s (1.5) must be greater than start_s (4)"),
    ({"split": 1}, "split", "must be a string or null, got a number"),
    ({"path": ["a.mp4"]}, "path", "must be a string, got an array"),
    ({"emotion": {"happy": 1}}, "emotion", "label values must be JSON scalars"),
    ({"emotion": [1, 2]}, "emotion", "got an array"),
])
def test_bad_values_jsonl(tmp_path: Path, row: dict[str, object], column: str, fragment: str) -> None:
    path = write_text(tmp_path / "m.jsonl", jsonl({"video_id": "v7", "path": "a.mp4", **row}))
    msg = load_error(path)
    assert f"line 1 (video_id 'v7'), column '{column}': " in msg
    assert fragment in msg


def test_non_finite_jsonl_number(tmp_path: Path) -> None:
    # 1e999 is valid JSON but overflows to inf.
    path = write_text(tmp_path / "m.jsonl",
                      '{"video_id": "v", "path": "a", "end_s": 1e999, "x": -1e999}\n')
    msg = load_error(path)
    assert "column 'end_s': inf is not a finite number" in msg
    assert "column 'x': label value -inf is not finite" in msg


def test_malformed_jsonl_lines(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.jsonl",
                      '{"video_id": "v1", "path": "a.mp4"}\n'
                      '{"video_id": "v2", "path": \n'
                      '["v3", "c.mp4"]\n'
                      '"just a string"\n'
                      '{"video_id": "v5", "path": "e.mp4", "x": NaN}\n'
                      '{"video_id": "v6", "path": "f.mp4", "video_id": "v6b"}\n')
    msg = load_error(path)
    assert "5 problems" in msg
    assert "line 2: malformed JSON" in msg
    assert "line 3: expected a JSON object per line, got an array" in msg
    assert "line 4: expected a JSON object per line, got a string" in msg
    assert "line 5: malformed JSON (NaN is not valid JSON; use null" in msg
    assert "line 6: malformed JSON (key 'video_id' appears twice" in msg


def test_ragged_and_bad_header_csv(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path,x\nv1,a.mp4\nv2,b.mp4,1,extra\nv3,c.mp4,ok\n")
    msg = load_error(path)
    assert "line 2: the row has 2 cells but the header has 3 columns" in msg
    assert "line 3: the row has 4 cells but the header has 3 columns" in msg

    path = write_text(tmp_path / "h.csv", "video_id,path,x,x,\nv1,a.mp4,1,2,3\n")
    msg = load_error(path)
    assert "line 1: column 'x' appears twice in the header (columns 3 and 4)" in msg
    assert "line 1: header column 5 has no name" in msg


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("empty.csv", "", "the file is empty; the first line must be a header"),
    ("header_only.csv", "video_id,path\n", "the file has no rows; add one row per media item below the "
                                           "header line"),
    ("blank.csv", "video_id,path\n\n  \n", "the file has no rows"),
    ("empty.jsonl", "", "the file has no rows"),
    ("blank.jsonl.gz", "\n\n", "the file has no rows"),
])
def test_empty_files(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    msg = load_error(write_text(tmp_path / name, content))
    assert name in msg
    assert fragment in msg


@pytest.mark.parametrize("name", ["m.txt", "m.json", "m.tsv", "m.csv.bz2", "manifest"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = write_text(tmp_path / name, "video_id,path\nv,a.mp4\n")
    msg = load_error(path)
    assert "unsupported file type" in msg
    for suffix in MANIFEST_SUFFIXES:
        assert suffix in msg


def test_upper_case_suffix_accepted(tmp_path: Path) -> None:
    path = write_text(tmp_path / "M.CSV", "video_id,path\nv,a.mp4\n")
    assert load_manifest(path).ids() == ["v"]


def test_unreadable_files(tmp_path: Path) -> None:
    assert "does not exist" in load_error(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_bytes(b"video_id,path\nv,\xff\xfe.mp4\n")
    assert "save it as UTF-8" in load_error(tmp_path / "bad.csv")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    assert "cannot be read" in load_error(tmp_path / "bad.csv.gz")


def test_problem_listing_is_capped(tmp_path: Path) -> None:
    rows = "".join(f"../bad{i},a.mp4\n" for i in range(30))
    path = write_text(tmp_path / "m.csv", "video_id,path\n" + rows)
    msg = load_error(path)
    assert "30 problems" in msg
    assert "'../bad19'" in msg
    assert "'../bad20'" not in msg
    assert "... and 10 more" in msg


def test_all_problems_collected_in_one_error(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", HEADER
                      + "a/b,x.mp4,,,,,\n"
                      + "ok1,,,,,,\n"
                      + "ok2,y.mp4,,2,1,,\n"
                      + "ok3,z.mp4,,-1,,,\n")
    msg = load_error(path)
    assert "4 problems" in msg
    for line in (2, 3, 4, 5):
        assert f"line {line}" in msg


def test_manifest_error_is_a_store_and_value_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        load_manifest(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_manifest(tmp_path / "x.txt")


def test_missing_media_is_not_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "here.mp4").write_bytes(b"\0")
    (tmp_path / "adir.mp4").mkdir()
    path = write_text(tmp_path / "m.csv", "video_id,path,start_s,end_s\n"
                      "here,here.mp4,,\ngone,gone.mp4,,\nclip1,gone2.mp4,0,1\nclip2,gone2.mp4,1,2\n"
                      "dir,adir.mp4,,\nurl,http://host/x.mp4,,\n")
    manifest = load_manifest(path)
    assert len(manifest) == 6
    assert [item.video_id for item in manifest.missing_files()] == ["gone", "clip1", "clip2", "dir"]


def test_same_file_and_clip_twice_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_text(tmp_path / "m.csv", "video_id,path,start_s,end_s\na,x.mp4,0,1\nb,x.mp4,0,1\n"
                      "c,x.mp4,1,2\n")
    with caplog.at_level(logging.WARNING, logger="affectcache.store.manifest"):
        assert len(load_manifest(path)) == 3
    assert "'b' = 'a'" in caplog.text


# ---- Manifest ------------------------------------------------------------------------------------
@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    """A loaded manifest with splits train/val/test."""
    return load_manifest(write_text(tmp_path / "m.csv", "video_id,path,split,y\n"
                                    "alpha,a.mp4,train,1\nbeta,b.mp4,test,2\ngamma,c.mp4,train,3\n"
                                    "delta,d.mp4,val,4\nepsilon,e.mp4,,5\n"))


def test_manifest_basics(manifest: Manifest) -> None:
    assert len(manifest) == 5
    assert [item.video_id for item in manifest] == manifest.ids()
    assert manifest.ids() == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert "beta" in manifest
    assert "zeta" not in manifest
    assert manifest.get("gamma").labels == {"y": 3}


def test_get_unknown_lists_near_ids(manifest: Manifest) -> None:
    with pytest.raises(ManifestError, match=r"no item has video_id 'gamm'.*did you mean 'gamma'") as exc:
        manifest.get("gamm")
    assert str(manifest.source) in str(exc.value)
    with pytest.raises(ManifestError, match=r"'zzzzzz' \(no similar id among the 5 items\)"):
        manifest.get("zzzzzz")


def test_select_split(manifest: Manifest) -> None:
    train = manifest.select(split="train")
    assert train.ids() == ["alpha", "gamma"]
    assert train.source == manifest.source
    assert train.label_columns == ("y",)
    assert manifest.select().ids() == manifest.ids()
    with pytest.raises(ManifestError, match=r"no item has split 'tset'.*\['test', 'train', 'val'\]"):
        manifest.select(split="tset")


def test_select_only(manifest: Manifest) -> None:
    assert manifest.select(only=["delta", "alpha", "delta"]).ids() == ["alpha", "delta"]  # file order
    assert manifest.select(only=[]).ids() == []
    assert manifest.select(split="train", only=["gamma"]).ids() == ["gamma"]
    with pytest.raises(ManifestError, match=r"2 requested video id\(s\) not in the manifest: 'alpah' "
                                            r"\(did you mean 'alpha'\?\); 'nope'"):
        manifest.select(only=["alpha", "alpah", "nope"])
    with pytest.raises(ManifestError, match=r"not in split 'train': 'beta' \(split 'test'\)"):
        manifest.select(split="train", only=["alpha", "beta"])
    with pytest.raises(TypeError, match=r"pass \['alpha'\]"):
        manifest.select(only="alpha")


def test_manifest_construction_checks_ids() -> None:
    item = MediaItem(video_id="v", path="/x.mp4")
    with pytest.raises(ManifestError, match="duplicate video_id 'v' \\(items 1 and 2\\)"):
        Manifest(items=(item, item))
    with pytest.raises(ManifestError, match=r"item 1: invalid video id '\.\./x'"):
        Manifest(items=(MediaItem(video_id="../x", path="/x.mp4"),))
    built = Manifest(items=(MediaItem(video_id="a", path="/a", labels={"k": 1, "j": 2}),
                            MediaItem(video_id="b", path="/b", labels={"z": 0})))
    assert built.label_columns == ("k", "j", "z")
    assert built.source is None


# ---- writing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", MANIFEST_SUFFIXES)
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    items = sample_items(tmp_path / "media")
    out = write_manifest(items, tmp_path / "out" / f"m{suffix}")
    assert out == tmp_path / "out" / f"m{suffix}"
    back = load_manifest(out)
    assert back.items == tuple(items)
    assert back.label_columns == ("emotion", "valence", "count", "note")
    assert manifest_digest(back) == manifest_digest(Manifest(items=tuple(items)))
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_written_paths_relative_or_absolute(tmp_path: Path) -> None:
    items = [MediaItem(video_id="v1", path=str(tmp_path / "media" / "v1.mp4")),
             MediaItem(video_id="v2", path="https://example.org/v2.mp4")]
    rel = write_manifest(items, tmp_path / "lists" / "rel.jsonl")
    rows = [json.loads(line) for line in rel.read_text().splitlines()]
    assert rows[0] == {"video_id": "v1", "path": "../media/v1.mp4"}
    assert rows[1]["path"] == "https://example.org/v2.mp4"

    absolute = write_manifest(items, tmp_path / "lists" / "abs.csv", relative_to_manifest=False)
    assert absolute.read_text().splitlines() == ["video_id,path", f"v1,{tmp_path / 'media' / 'v1.mp4'}",
                                                 "v2,https://example.org/v2.mp4"]
    # Moving the manifest together with the media keeps a relative manifest valid.
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "lists").rename(moved / "lists")
    assert load_manifest(moved / "lists" / "rel.jsonl").get("v1").path == str(moved / "media" / "v1.mp4")


def test_write_only_used_optional_columns(tmp_path: Path) -> None:
    out = write_manifest([MediaItem(video_id="v", path="/a.mp4", corpus="c", end_s=2.0)],
                         tmp_path / "m.csv")
    assert out.read_text().splitlines()[0] == "video_id,path,corpus,end_s"


def test_write_keeps_manifest_label_columns(manifest: Manifest, tmp_path: Path) -> None:
    out = write_manifest(manifest.select(split="train"), tmp_path / "train.csv")
    back = load_manifest(out)
    assert back.label_columns == ("y",)
    assert [item.path for item in back] == [manifest.get("alpha").path, manifest.get("gamma").path]


def test_gz_output_is_reproducible(tmp_path: Path) -> None:
    items = sample_items(tmp_path)
    first = write_manifest(items, tmp_path / "a.jsonl.gz").read_bytes()
    second = write_manifest(items, tmp_path / "a.jsonl.gz").read_bytes()
    assert first == second
    assert gzip.decompress(first).decode().count("\n") == len(items)


def test_write_replaces_atomically_and_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "m.csv"
    write_manifest([MediaItem(video_id="old", path="/old.mp4")], target)
    write_manifest([MediaItem(video_id="new", path="/new.mp4")], target)
    assert load_manifest(target).ids() == ["new"]
    with pytest.raises(ManifestError):
        write_manifest([MediaItem(video_id="../evil", path="/x.mp4")], target)
    assert load_manifest(target).ids() == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


@pytest.mark.parametrize("bad_id", ["../x", "a/b", ".hidden", ""])
def test_write_refuses_hostile_ids_before_writing(tmp_path: Path, bad_id: str) -> None:
    target = tmp_path / "sub" / "m.jsonl"
    items = [MediaItem(video_id="fine", path="/a.mp4"), MediaItem(video_id=bad_id, path="/b.mp4")]
    with pytest.raises(ManifestError, match=r"(?s)nothing was written.*item 2, column 'video_id': "
                                            r"invalid video id"):
        write_manifest(items, target)
    assert not (tmp_path / "sub").exists()


def test_write_refuses_bad_items(tmp_path: Path) -> None:
    items = [
        MediaItem(video_id="a", path="/a.mp4", start_s=2.0, end_s=1.0),
        MediaItem(video_id="a", path=""),
        MediaItem(video_id="b", path="/b.mp4", start_s=float("nan"), labels={"x": [1, 2]}),
        MediaItem(video_id="c", path="/c.mp4", labels={"x": float("inf"), "split": "train"}),
    ]
    with pytest.raises(ManifestError) as info:
        write_manifest(items, tmp_path / "m.csv")
    msg = str(info.value)
    assert "item 1 (video_id 'a'), column 'end_s': end_s (1.0) must be greater than start_s (2.0)" in msg
    assert "item 2 (video_id 'a'), column 'video_id': duplicate video_id (also item 1)" in msg
    assert "item 2 (video_id 'a'), column 'path': empty path" in msg
    assert "item 3 (video_id 'b'), column 'start_s': nan is not a finite number" in msg
    assert "item 3 (video_id 'b'), column 'x': label values must be str, int, float, bool or None" in msg
    assert "item 4 (video_id 'c'), column 'x': label value inf is not finite" in msg
    assert "label name 'split' is empty or clashes with a manifest column" in msg
    assert not (tmp_path / "m.csv").exists()


def test_write_refuses_empty_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no items to write"):
        write_manifest([], tmp_path / "m.csv")
    with pytest.raises(ManifestError, match=r"unsupported file type \.txt; use one of \.csv"):
        write_manifest([MediaItem(video_id="v", path="/a")], tmp_path / "m.txt")


def test_csv_lossy_types_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = [MediaItem(video_id="v", path="/a.mp4", labels={"code": "3", "flag": True, "ok": 1.5})]
    with caplog.at_level(logging.WARNING, logger="affectcache.store.manifest"):
        write_manifest(items, tmp_path / "m.csv")
    assert "['code', 'flag']" in caplog.text
    assert load_manifest(tmp_path / "m.csv").get("v").labels == {"code": 3, "flag": "True", "ok": 1.5}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="affectcache.store.manifest"):
        write_manifest(items, tmp_path / "m.jsonl")
    assert caplog.text == ""
    assert load_manifest(tmp_path / "m.jsonl").get("v").labels == {"code": "3", "flag": True, "ok": 1.5}


# ---- digest --------------------------------------------------------------------------------------
def test_digest(tmp_path: Path) -> None:
    items = sample_items(tmp_path)
    base = manifest_digest(Manifest(items=tuple(items)))
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert manifest_digest(Manifest(items=tuple(reversed(items)))) == base  # row order does not matter
    changed = [*items[:3], MediaItem(video_id="b.2", path=items[3].path, end_s=3.5, split="val",
                                     labels=items[3].labels)]
    assert manifest_digest(Manifest(items=tuple(changed))) != base
    relabelled = [*items[:3], MediaItem(video_id="b.2", path=items[3].path, end_s=3.0, split="val",
                                        labels={**items[3].labels, "count": 0})]
    assert manifest_digest(Manifest(items=tuple(relabelled))) != base
    int_vs_float = [MediaItem(video_id="v", path="/a", labels={"y": 3})]
    float_label = [MediaItem(video_id="v", path="/a", labels={"y": 3.0})]
    assert manifest_digest(Manifest(items=tuple(int_vs_float))) != manifest_digest(
        Manifest(items=tuple(float_label)))


def test_header_after_blank_lines(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "\n\nvideo_id,file\nv1,a.mp4\n")
    assert "line 3: missing required column 'path'" in load_error(path)
    path = write_text(tmp_path / "m.csv", "\n\nvideo_id,path\nv1,a.mp4\n../v2,b.mp4\n")
    assert "line 5, column 'video_id': invalid video id '../v2'" in load_error(path)
