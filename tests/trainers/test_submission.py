"""The mock ABAW submission: a template written in the organisers' shape, the submission from a
prediction modality, and the check of a submission against its template."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors.core.provenance import stable_hash
from affectcache.extractors.core.records import FeatureArray
from affectcache.store.errors import StoreError
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.submission import (
    check_submission,
    read_template,
    write_abaw_submission,
    write_abaw_template,
)

if TYPE_CHECKING:
    from pathlib import Path

LENGTHS = {"vidA": 5, "vidB": 3}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """A label track and a prediction modality (valence, arousal, one embedding column; arousal of
    vidB out of range) for two videos; vidB's label frames start at 2."""
    fs = FeatureStore(tmp_path / "s.zarr")
    track = fs.init_label_track("valence", source="test")
    config = {"k": 1}
    fs.init_modality("pred-x", {
        "extractor": "test", "version": "1", "modality_kind": "frame", "config": config,
        "config_fingerprint": stable_hash(config), "upstream": {},
        "model": {"id": None, "revision": None, "sha256": None}, "libraries": {}, "created": "now"})
    for vid, n in LENGTHS.items():
        start = 2 if vid == "vidB" else 0
        frame = np.arange(start, start + n)
        t = frame / 25.0
        fs.write(track, FeatureArray(video_id=vid, kind="frame", values=np.zeros(n, np.float32), frame=frame,
                                     time_s=t))
        values = np.stack([frame / 10.0, -frame / 10.0 * (3 if vid == "vidB" else 1), frame * 0.0], 1)
        fs.write("pred-x", FeatureArray(video_id=vid, kind="frame", values=values.astype(np.float32),
                                        frame=frame, time_s=t,
                                        attrs={"columns": ["valence", "arousal", "embedding_0"]}))
    return fs


def test_template_submission_and_check(store: FeatureStore, tmp_path: Path) -> None:
    template = write_abaw_template(store, "labels/valence", ["vidB", "vidA"], tmp_path / "t.txt")
    lines = template.read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal"
    # Videos in the order given, frames 1-based from the track's own frame numbers.
    assert [ln.split(",")[0] for ln in lines[1:4]] == ["vidB/00003.jpg", "vidB/00004.jpg", "vidB/00005.jpg"]
    assert read_template(template) == [("vidB", 3), ("vidB", 4), ("vidB", 5),
                                       *[("vidA", n) for n in range(1, 6)]]

    report = write_abaw_submission(store, "pred-x", template, tmp_path / "sub.txt")
    assert report.clamped == 1  # vidB arousal -0.6, -0.9, -1.2: one beyond -1
    check = check_submission(report.path, template)
    assert (check.rows, check.videos) == (8, 2)
    assert check.value_range == (-1.0, 0.4)
    row = report.path.read_text().splitlines()[2]  # vidB/00004.jpg = frame 3
    assert row == "vidB/00004.jpg,0.300000,-0.900000"


def test_check_refuses_wrong_rows_order_and_values(store: FeatureStore, tmp_path: Path) -> None:
    template = write_abaw_template(store, "labels/valence", ["vidA"], tmp_path / "t.txt")
    good = write_abaw_submission(store, "pred-x", template, tmp_path / "sub.txt").path
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.txt"

    bad.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(StoreError, match=r"4 rows, the template .* has 5"):
        check_submission(bad, template)
    bad.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(StoreError, match=r"bad.txt:2: 'vidA/00002.jpg' where the template has vidA/00001"):
        check_submission(bad, template)
    bad.write_text("\n".join([*lines[:-1], "vidA/00005.jpg,0.1,1.5"]) + "\n")
    with pytest.raises(StoreError, match=r"bad.txt:6: values must be finite and within \[-1, 1\]"):
        check_submission(bad, template)
    bad.write_text("\n".join([*lines[:-1], "vidA/00005.jpg,0.1"]) + "\n")
    with pytest.raises(StoreError, match=r"bad.txt:6: expected two numbers"):
        check_submission(bad, template)
    bad.write_text("image,valence,arousal\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(StoreError, match="header must be image_location,valence,arousal"):
        check_submission(bad, template)


def test_template_needs_every_video(store: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"labels/valence has no entry for 1 template videos \(vidZ\)"):
        write_abaw_template(store, "labels/valence", ["vidA", "vidZ"], tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()
