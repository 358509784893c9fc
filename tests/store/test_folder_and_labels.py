"""A manifest from a folder of media files, and users' own label CSVs as label tracks (issue 17.3)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.store.corpora.base import CorpusError, read_corpus
from affectcache.store.label_import import import_labels
from affectcache.store.manifest import Manifest, load_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.cli.test_cli import run

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def folder(tmp_path: Path, media_dir: Path) -> Path:
    root = tmp_path / "videos"
    (root / "day 2").mkdir(parents=True)
    shutil.copy(media_dir / "a.mp4", root / "Interview #1.mp4")
    shutil.copy(media_dir / "b.mp4", root / "day 2" / "Interview #1.MP4")  # same stem, other folder
    shutil.copy(media_dir / "silent_video.mp4", root / "day 2" / "silent.mp4")
    shutil.copy(media_dir / "text.mp4", root / "broken.mp4")
    (root / "notes.txt").write_text("not media")
    return root


def test_folder_manifest_ids_probe_and_problems(folder: Path, tmp_path: Path) -> None:
    result = read_corpus("folder", folder)
    by_name = {item.labels["source_name"]: item for item in result.items}
    assert sorted(by_name) == ["Interview #1.mp4", "day 2/Interview #1.MP4", "day 2/silent.mp4"]
    ids = [item.video_id for item in result.items]
    assert len(set(ids)) == 3
    assert {"Interview__1", "Interview__1-2"} <= set(ids)
    silent = by_name["day 2/silent.mp4"]
    assert silent.labels["has_audio"] is False
    assert by_name["Interview #1.mp4"].labels["has_audio"] is True
    assert by_name["Interview #1.mp4"].labels["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert [p.file for p in result.warnings] == ["broken.mp4"]
    only_mp4 = read_corpus("folder", folder, patterns=["day 2/*"])
    assert len(only_mp4.items) == 2
    out = tmp_path / "m.jsonl"
    code, _, err = run("manifest", "folder", "--root", str(folder), "--out", str(out))
    assert code == 0, err
    assert "broken.mp4" in err
    assert len(load_manifest(out)) == 3
    code, _, err = run("manifest", "folder", "--root", str(folder), "--out", str(out), "--strict")
    assert code == 2
    with pytest.raises(CorpusError, match="takes no options"):
        read_corpus("bah", folder, patterns=["*"])


def _manifest(tmp_path: Path, media_dir: Path) -> Manifest:
    from affectcache.extractors.core.records import MediaItem

    return Manifest(items=(MediaItem(video_id="a", path=str(media_dir / "a.mp4"), labels={"fps": 10.0}),
                           MediaItem(video_id="b", path=str(media_dir / "b.mp4"))))


def test_label_csv_per_frame_and_timed(tmp_path: Path, media_dir: Path) -> None:
    manifest = _manifest(tmp_path, media_dir)
    store = FeatureStore(tmp_path / "s.zarr")
    csv = tmp_path / "arousal.csv"
    csv.write_text("video_id,frame,value\na,0,0.5\na,2,0.7\nb,1,\nb,0,-0.25\n")
    done = import_labels(store, "arousal", csv, manifest)
    assert done.videos == 2
    a = store.read("labels/arousal", "a")
    np.testing.assert_allclose(a.values, [0.5, 0.0, 0.7])
    np.testing.assert_array_equal(a.mask, [True, False, True])
    np.testing.assert_allclose(a.time_s, [0.0, 0.1, 0.2])  # the manifest's fps
    b = store.read("labels/arousal", "b")
    np.testing.assert_array_equal(b.mask, [True, False])
    timed = tmp_path / "valence.csv"
    timed.write_text("video_id,time_s,score\na,0.5,1\na,0.0,2\n")
    import_labels(store, "valence", timed, manifest, value_column="score")
    v = store.read("labels/valence", "a")
    np.testing.assert_allclose(v.time_s, [0.0, 0.5])
    np.testing.assert_allclose(v.values, [2.0, 1.0])


def test_label_csv_problems_name_the_line_and_write_nothing(tmp_path: Path, media_dir: Path) -> None:
    manifest = _manifest(tmp_path, media_dir)
    store_path = tmp_path / "s.zarr"
    csv = tmp_path / "bad.csv"
    csv.write_text("video_id,frame,value\naa,0,1\na,x,1\na,1,abc\na,2,1\na,2,1\n")
    with pytest.raises(CorpusError) as info:
        import_labels(store_path, "arousal", csv, manifest)
    message = str(info.value)
    assert "bad.csv:2: error: video_id 'aa' is not in the manifest (did you mean 'a'?)" in message
    assert "bad.csv:3" in message
    assert "bad.csv:4" in message
    assert "bad.csv:6: error: a: frame 2 is given twice" in message
    assert not store_path.exists() or "labels/arousal" not in FeatureStore(store_path).label_tracks()
    (tmp_path / "m.jsonl").write_text("")
    from affectcache.store.manifest import write_manifest

    write_manifest(manifest, tmp_path / "m.jsonl")
    code, _, err = run("labels", "import", str(csv), "-s", str(store_path), "-m", str(tmp_path / "m.jsonl"),
                       "--track", "arousal")
    assert code == 2
    assert "did you mean 'a'" in err
    good = tmp_path / "good.csv"
    good.write_text("video_id,frame,value\na,0,1\n")
    code, out, err = run("labels", "import", str(good), "-s", str(store_path), "-m",
                         str(tmp_path / "m.jsonl"), "--track", "arousal")
    assert code == 0, err
    assert "labels/arousal: 1 videos" in out
