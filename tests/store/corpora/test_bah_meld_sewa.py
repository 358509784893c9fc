"""BAH, MELD and SEWA adapters: comma-laden transcripts, quoted CSV fields, 10 Hz semicolon traces."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors.media.video import iter_frames
from affectcache.store.align import align_feature_array
from affectcache.store.corpora.base import CorpusError, import_corpus, read_corpus
from affectcache.store.corpora.meld import parse_time
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.store.corpora.corpus_fixtures import (
    MELD_ROWS,
    corpus_clip,
    sewa_rows,
    write_bah,
    write_meld,
    write_sewa,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["corpus_clip"]


# ---- BAH -----------------------------------------------------------------------------------------
def test_bah_splits_labels_subjects_and_comma_transcripts(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_bah(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    result = read_corpus("bah", root)
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    first = items["P001_Question_1_2023_1200_Video"]
    assert (first.split, first.subject, first.labels["ah"], first.labels["ah_class"]) == \
        ("train", "P001", 1, "With A-H")
    assert [i.split for i in result.items] == ["train", "train", "val", "test"]
    import_corpus("bah", root, tmp_path / "m.csv", store=store)
    fs = FeatureStore(store, read_only=True)
    assert list(fs.read("transcript", "P001_Question_1_2023_1200_Video").values) == \
        ["yes, well, I am not sure, maybe"]
    assert list(fs.read("transcript", "P004_Question_5_2023_1500_Video").values) == ['hmm, "quoted", text']
    assert "P003_Question_2_2023_1400_Video" not in fs.videos("transcript")  # empty transcript: no row
    assert load_manifest(tmp_path / "m.csv").get("P002_Question_3_2023_1300_Video").labels["ah"] == 0


def test_bah_bad_labels_duplicates_and_missing_videos(tmp_path: Path, corpus_clip: Path) -> None:
    lines = {"train.txt": ["Videos/P1/Visite_1/a.mp4,2,text", "Videos/P1/Visite_1/b.mp4,x,text",
                           "Videos/P1/Visite_1/a.mp4,0,again"],
             "val.txt": ["Videos/P2/Visite_1/c.mp4,0,t"], "test.txt": []}
    root = write_bah(tmp_path, corpus_clip, lines=lines)
    (root / "Videos/P2/Visite_1/c.mp4").unlink()
    text = [str(p) for p in read_corpus("bah", root).problems]
    split = "dataset-splits/video-level/BAH_DB/split-0"
    assert (f"{split}/train.txt:1: warning: label 2 is not a class id of class_id.yaml ([0, 1]); "
            "left empty") in text
    assert any(t.startswith(f"{split}/train.txt:2: error: label 'x'") for t in text)
    assert any(t.startswith(f"{split}/train.txt:3: error: duplicate video 'a'") for t in text)
    assert any(t.startswith(f"{split}/val.txt:1: warning: label without media") for t in text)


def test_bah_refuses_video_paths_that_leave_media_and_names_an_empty_split_file(
        tmp_path: Path, corpus_clip: Path) -> None:
    root = write_bah(tmp_path, corpus_clip)
    split = root / "dataset-splits/video-level/BAH_DB/split-0"
    outside = root / "outside" / "x.mp4"  # a real file outside --media (root/media)
    outside.parent.mkdir()
    outside.write_bytes(b"not yours")
    media = root / "media"
    shutil.copytree(root / "Videos", media / "Videos")
    hostile = ["../outside/x.mp4", "Videos/a/../../../outside/x.mp4", str(outside)]
    (split / "train.txt").write_text("".join(f"{p},1,t\n" for p in hostile))
    (split / "test.txt").write_bytes(b"")
    result = read_corpus("bah", root, media)
    text = [str(p) for p in result.problems]
    for line, rel in enumerate(hostile, start=1):
        assert (f"dataset-splits/video-level/BAH_DB/split-0/train.txt:{line}: error: video path {rel!r} "
                "leaves --media (absolute, or with '..'); expected a path under it, such as Videos/P001/..."
                ) in text
    assert "dataset-splits/video-level/BAH_DB/split-0/test.txt: warning: split file is empty; no test " \
           "videos" in text
    assert all(not item.path.startswith(str(root / "outside")) for item in result.items)
    with pytest.raises(CorpusError, match="leaves --media"):
        import_corpus("bah", root, tmp_path / "m.csv", media=media)
    assert not (tmp_path / "m.csv").exists()


# ---- MELD ----------------------------------------------------------------------------------------
def test_meld_time_parsing() -> None:
    assert parse_time("00:14:38,127") == pytest.approx(878.127)
    assert parse_time("0:00:01.5") == pytest.approx(1.5)
    assert parse_time("14:38") is None


def test_meld_rows_ids_labels_and_transcripts(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_meld(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    result = read_corpus("meld", root)
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["test_dia0_utt0", "train_dia0_utt0", "train_dia0_utt1", "val_dia0_utt0"]
    first = items["train_dia0_utt0"]
    assert first.path.endswith("train_splits/dia0_utt0.mp4")
    assert (first.subject, first.labels["emotion"], first.labels["sentiment"], first.labels["season"]) == \
        ("Chandler", "neutral", "neutral", 8)
    assert first.labels["episode_start_s"] == pytest.approx(16 * 60 + 16.059)
    import_corpus("meld", root, tmp_path / "m.jsonl", store=store)
    text = FeatureStore(store, read_only=True).read("transcript", "train_dia0_utt0")
    assert list(text.values) == [MELD_ROWS["train"][0][1]]  # the quoted comma survives
    assert (text.start_s[0], text.end_s[0]) == (0.0, pytest.approx(5.672))


def test_meld_unknown_labels_duplicates_and_missing_clips(tmp_path: Path, corpus_clip: Path) -> None:
    rows = {"train": [[1, "hi", "A", "happy", "neutral", 0, 0, 1, 1, "00:00:01,000", "00:00:02,000"],
                      [2, "hi", "A", "joy", "neutral", 0, 0, 1, 1, "00:00:01,000", "00:00:02,000"],
                      [3, "yo", "B", "joy", "meh", 1, 0, 1, 1, "bad", "00:00:02,000"]]}
    root = write_meld(tmp_path, corpus_clip, rows=rows)
    (root / "train_splits" / "dia1_utt0.mp4").unlink()
    text = [str(p) for p in read_corpus("meld", root).problems]
    assert any(t.startswith("train_sent_emo.csv:2: warning: emotion 'happy'") for t in text)
    assert any(t.startswith("train_sent_emo.csv:3: error: duplicate utterance 'train_dia0_utt0' (also "
               "train_sent_emo.csv:2): Dialogue_ID/Utterance_ID 0/0 appear twice")
               for t in text)
    assert any(t.startswith("train_sent_emo.csv:4: warning: sentiment 'meh'") for t in text)
    assert any(t.startswith("train_sent_emo.csv:4: warning: StartTime/EndTime") for t in text)
    assert any(t.startswith("train_sent_emo.csv:4: warning: label without media") for t in text)


# ---- SEWA ----------------------------------------------------------------------------------------
def test_sewa_10hz_tracks_round_trip_onto_the_video_frame_clock(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_sewa(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    result = read_corpus("sewa", root, root / "media")
    assert result.problems == ()
    assert {(i.video_id, i.split, i.labels["culture"]) for i in result.items} == \
        {("Train_DE_01", "train", "DE"), ("Devel_HU_02", "val", "HU")}
    report = import_corpus("sewa", root, tmp_path / "m.jsonl", media=root / "media", store=store)
    assert report.track_entries == {"arousal": 2, "valence": 2, "liking": 2}
    fs = FeatureStore(store, read_only=True)
    manifest = load_manifest(tmp_path / "m.jsonl")
    frame_times = np.array([f.time_s for f in iter_frames(manifest.get("Devel_HU_02").path)])
    want = sewa_rows(8, 1)
    for k, track in enumerate(("arousal", "valence", "liking")):
        entry = fs.read(f"labels/{track}", "Devel_HU_02")
        assert entry.attrs["rate_hz"] == 10.0
        np.testing.assert_allclose(entry.time_s, np.arange(8) / 10)
        got, mask = align_feature_array(entry, frame_times, method="nearest")
        assert mask.all()
        np.testing.assert_allclose(got, want[:, k], atol=1e-6)


def test_sewa_quoted_names_bad_rows_and_empty_test_labels(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_sewa(tmp_path, corpus_clip, names=("Train_DE_01", "Test_CN_03"))
    test_file = root / "labels" / "Test_CN_03.csv"
    test_file.write_text("name;timestamp;arousal;valence;liking\n'Test_CN_03';0.0;;;\n'Test_CN_03';0.1;;;\n")
    train_file = root / "labels" / "Train_DE_01.csv"
    lines = train_file.read_text().splitlines()
    lines[2] = "'Train_DE_01';0.1;1.7;0.0;0.0"
    lines[4] = "'Train_DE_01';0.35;0.1;0.0;0.0"
    train_file.write_text("\n".join(lines) + "\n")
    result = read_corpus("sewa", root, root / "media")
    text = [str(p) for p in result.problems]
    assert "labels/Train_DE_01.csv:3: warning: arousal 1.7 outside [-1, 1]; row masked for arousal" in text
    assert any(t.startswith("labels/Train_DE_01.csv:5: warning: 2 timestamp step(s) differ") for t in text)
    assert {i.video_id for i in result.items} == {"Train_DE_01", "Test_CN_03"}
    assert {e.video_id for e in result.tracks} == {"Train_DE_01"}  # unreleased test labels: no tracks
    arousal = next(e for e in result.tracks if e.track == "arousal")
    assert arousal.valid[:3].tolist() == [True, False, True]

    test_file.write_text("name;timestamp;arousal;valence;liking\n'Other_01';0.0;0.1;0.1;0.1\n")
    errors = [str(p) for p in read_corpus("sewa", root, root / "media").errors]
    assert errors == ["labels/Test_CN_03.csv:2: error: name 'Other_01' differs from the file's recording "
                      "'Test_CN_03'"]


def test_sewa_reads_only_the_labels_of_the_release_root_or_of_labels_itself(tmp_path: Path,
                                                                            corpus_clip: Path) -> None:
    root = write_sewa(tmp_path, corpus_clip)
    assert (root / "visual_features_xbow" / "Train_DE_01.csv").exists()  # same names as the labels
    for given in (root, root / "labels"):
        result = read_corpus("sewa", given, root / "media")
        assert result.problems == (), given
        assert sorted(i.video_id for i in result.items) == ["Devel_HU_02", "Train_DE_01"]
        assert {e.video_id for e in result.tracks} == {"Devel_HU_02", "Train_DE_01"}
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (error,) = read_corpus("sewa", empty, root / "media").errors
    assert "give the release folder (holding labels/) or its labels/ folder as --root" in str(error)
