"""Aff-Wild2 adapter: ABAW VA files → manifest + per-frame tracks on the probed frame clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors.media.video import iter_frames
from affectcache.store.align import align_feature_array
from affectcache.store.corpora.base import CorpusError, import_corpus, read_corpus, write_corpus
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.store.corpora.corpus_fixtures import CLIP_FPS, affwild_expected, corpus_clip, write_affwild2

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["corpus_clip"]


def test_reads_splits_sides_fps_and_masks_invalid_frames(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path, corpus_clip)
    result = read_corpus("aff-wild2", root, root / "media")
    assert result.problems == ()
    items = {item.video_id: item for item in result.items}
    assert sorted(items) == ["vidA", "vidB", "vidC", "video2_left", "video2_right"]
    assert {v: i.split for v, i in items.items()} == {"vidA": "train", "video2_left": "train",
                                                      "video2_right": "train", "vidB": "val", "vidC": "test"}
    left, right = items["video2_left"], items["video2_right"]
    assert left.path == right.path
    assert left.path.endswith("video2.mp4")
    assert [left.labels["side"], right.labels["side"], items["vidA"].labels["side"]] == \
        ["left", "right", None]
    assert left.labels["source_video"] == "video2"
    assert items["vidA"].labels["fps"] == pytest.approx(CLIP_FPS)
    # Test-set rows are manifest rows without label tracks.
    assert {(e.track, e.video_id) for e in result.tracks if e.video_id == "vidC"} == set()
    track = next(e for e in result.tracks if e.track == "valence" and e.video_id == "vidA")
    _, _, valid = affwild_expected("vidA")
    assert track.valid.tolist() == valid.tolist()
    np.testing.assert_allclose(track.time_s, np.arange(8) / CLIP_FPS)


def test_round_trip_store_labels_aligned_to_decoded_frames_equal_the_file(tmp_path: Path,
                                                                         corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path, corpus_clip)
    store = tmp_path / "s.zarr"
    report = import_corpus("aff-wild2", root, tmp_path / "m.jsonl", media=root / "media", store=store)
    assert report.track_entries == {"valence": 4, "arousal": 4}
    manifest = load_manifest(tmp_path / "m.jsonl")
    assert len(manifest) == 5
    fs = FeatureStore(store, read_only=True)
    assert fs.provenance("labels/valence")["config"]["source"] == "aff-wild2"
    for vid in ("vidA", "video2_right", "vidB"):
        frame_times = np.array([f.time_s for f in iter_frames(manifest.get(vid).path)])
        want_v, want_a, want_valid = affwild_expected(vid)
        for track, want in (("valence", want_v), ("arousal", want_a)):
            entry = fs.read("labels/" + track, vid)
            assert entry.attrs["rate_hz"] == pytest.approx(CLIP_FPS)
            got, mask = align_feature_array(entry, frame_times, method="nearest")
            assert mask.tolist() == want_valid.tolist()
            np.testing.assert_allclose(got[mask], want[want_valid], atol=1e-7)
    assert not fs.has("labels/valence", "vidC")


def test_problems_name_file_and_line(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path, corpus_clip, media_names=("vidA", "video2", "vidB", "stray"), extra={
        "vidD": ("Train_Set", ["0.1,0.1", "1.5,0.2", "0.0,0.0"]),
        "vidB_dup": ("Validation_Set", ["0.1,0.1"]),
    })
    (root / "VA_Estimation_Challenge" / "Test_Set" / "vidB.txt").write_text("valence,arousal\n0.1,0.1\n")
    place = root / "media" / "vidD.mp4"
    place.write_bytes((root / "media" / "vidA.mp4").read_bytes())
    result = read_corpus("aff-wild2", root, root / "media")
    text = [str(p) for p in result.problems]
    assert any("Test_Set/vidB.txt" in t and "duplicate video 'vidB'" in t and "error" in t for t in text)
    assert any(t.startswith("VA_Estimation_Challenge/Train_Set/vidD.txt:3: warning") and "outside" in t
               for t in text)
    assert any("vidC.txt" in t and "label file without media" in t for t in text)
    assert any("vidB_dup.txt" in t and "without media" in t for t in text)
    assert any(t.startswith("media/stray.mp4: warning: media file without labels") for t in text)
    assert "vidC" not in {i.video_id for i in result.items}
    vid_d = next(e for e in result.tracks if e.video_id == "vidD" and e.track == "valence")
    assert vid_d.valid.tolist() == [True, False, True]
    with pytest.raises(CorpusError, match="duplicate video"):
        write_corpus(result, tmp_path / "m.csv", store=tmp_path / "s.zarr")
    assert not (tmp_path / "m.csv").exists()
    assert not (tmp_path / "s.zarr").exists()


def test_malformed_lines_are_errors_and_strict_refuses_warnings(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path, corpus_clip, media_names=("vidA", "video2", "vidB"))
    bad = tmp_path / "bad"
    write_affwild2(bad, corpus_clip, extra={"vidE": ("Train_Set", ["0.1;0.2", "abc,0.1"])},
                   media_names=("vidA", "video2", "vidB", "vidC", "vidE"))
    errors = [str(p) for p in read_corpus("aff-wild2", bad, bad / "media").errors]
    assert any("vidE.txt:2: error" in e for e in errors)
    assert any("vidE.txt:3: error" in e and "not two finite numbers" in e for e in errors)

    result = read_corpus("aff-wild2", root, root / "media")
    assert [p.severity for p in result.problems] == ["warning"]  # vidC has no media
    with pytest.raises(CorpusError, match="--strict"):
        write_corpus(result, tmp_path / "m.jsonl", store=tmp_path / "s.zarr", strict=True)
    assert not (tmp_path / "m.jsonl").exists()
    assert not (tmp_path / "s.zarr").exists()
    report = write_corpus(result, tmp_path / "m.jsonl", store=tmp_path / "s.zarr")
    assert report.n_items == 4
    assert len(report.warnings) == 1


def test_a_second_corpus_cannot_mix_into_the_same_label_track(tmp_path: Path, corpus_clip: Path) -> None:
    from affectcache.store.errors import ProvenanceMismatchError

    root = write_affwild2(tmp_path / "c", corpus_clip)
    store = FeatureStore(tmp_path / "s.zarr")
    store.init_label_track("valence", source="another-corpus")
    with pytest.raises(ProvenanceMismatchError, match="one store holds the label tracks of one corpus"):
        import_corpus("aff-wild2", root, tmp_path / "m.jsonl", media=root / "media", store=store)
    assert store.label_tracks() == ["valence"]  # arousal was not created either
    assert not (tmp_path / "m.jsonl").exists()
