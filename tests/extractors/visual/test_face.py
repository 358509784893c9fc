"""``face``: the real MediaPipe detector on a real face photo composited into synthetic videos."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.visual.face import (
    Detection,
    FaceConfig,
    FaceExtractor,
    FaceLayout,
    FaceTracker,
)
from tests.extractors.visual import media

if TYPE_CHECKING:
    from pathlib import Path

CENTRE_TOL = 0.03
"""Box centre tolerance, in frame fractions (about 12 px of the 384 px width)."""


@pytest.fixture(scope="module")
def one_face(face_assets: Path, face_videos: dict[str, Path]) -> tuple[FaceExtractor, object]:
    ext = FaceExtractor(FaceConfig(fps=None))
    return ext, ext.extract(MediaItem(video_id="one", path=str(face_videos["one"])))


def test_face_found_where_present_and_masked_where_absent(one_face: tuple[FaceExtractor, object]) -> None:
    _, feats = one_face
    assert feats.time_s is not None
    assert feats.mask is not None
    present = feats.time_s >= media.FACE_FROM_S - 1e-6
    assert present.sum() == 20
    assert (~present).sum() == 10
    assert feats.mask[present].mean() >= 0.95
    assert not feats.mask[~present].any()
    assert (feats.values[~present] == 0).all()
    assert feats.attrs["faces_found"] == int(feats.mask.sum())
    assert feats.attrs["no_face"] is False


def test_box_centre_matches_the_composited_position(one_face: tuple[FaceExtractor, object]) -> None:
    _, feats = one_face
    boxes, valid = FaceLayout.from_attrs(dict(feats.attrs)).boxes(feats.values)
    assert feats.time_s is not None
    checked = 0
    for t, box, ok in zip(feats.time_s, boxes[:, 0], valid[:, 0], strict=True):
        if not ok:
            continue
        ex, ey = media.face_centre(float(t))
        assert abs(box[0] + box[2] / 2 - ex) < CENTRE_TOL, t
        assert abs(box[1] + box[3] / 2 - ey) < CENTRE_TOL, t
        checked += 1
    assert checked >= 19
    assert feats.values[feats.mask, 5].min() >= 0.5  # detector score column


def test_policies_on_two_faces(face_assets: Path, face_videos: dict[str, Path]) -> None:
    item = MediaItem(video_id="two", path=str(face_videos["two"]))
    largest = FaceExtractor(FaceConfig(fps=2.0)).extract(item)
    everyone = FaceExtractor(FaceConfig(fps=2.0, policy="all", max_faces=3)).extract(item)
    loose = FaceConfig(fps=2.0, policy="average", max_faces=3, min_area_ratio=0.1)
    average = FaceExtractor(loose).extract(item)
    strict = FaceExtractor(FaceConfig(fps=2.0, policy="average", max_faces=3)).extract(item)
    lay_all = FaceLayout.from_attrs(dict(everyone.attrs))
    boxes, valid = lay_all.boxes(everyone.values)
    rows = everyone.mask
    assert largest.values.shape[1] == 7
    assert everyone.values.shape[1] == 1 + 3 * 6
    assert (largest.values[largest.mask, 0] == 2).all()  # both faces counted
    # Stable tracks: the big (sliding) face keeps slot 0, the still half-size one slot 1.
    assert valid[rows][:, :2].all()
    assert not valid[:, 2].any()
    assert (boxes[rows, 0, 2] > boxes[rows, 1, 2]).all()
    assert np.ptp(boxes[rows, 1, 0]) < 0.01
    # SCD's area rule: the small face (area ratio about 0.23) is kept only with a lower threshold.
    _, v_avg = FaceLayout.from_attrs(dict(average.attrs)).boxes(average.values)
    _, v_strict = FaceLayout.from_attrs(dict(strict.attrs)).boxes(strict.values)
    assert v_avg[average.mask][:, 1].all()
    assert not v_strict[:, 1].any()


def test_landmarks_option(face_assets: Path, face_videos: dict[str, Path]) -> None:
    item = MediaItem(video_id="one", path=str(face_videos["one"]), start_s=2.0)
    feats = FaceExtractor(FaceConfig(fps=2.0, landmarks=True)).extract(item)
    layout = FaceLayout.from_attrs(dict(feats.attrs))
    assert feats.values.shape[1] == layout.width == 7 + 478 * 2
    pts = feats.values[0, layout.landmark_offset(0):].reshape(478, 2)
    box = feats.values[0, 1:5]
    inside = ((pts[:, 0] >= box[0] - 0.05) & (pts[:, 0] <= box[0] + box[2] + 0.05)).mean()
    assert inside > 0.9


def test_video_without_face_is_recorded_not_an_error(face_assets: Path, media_dir: Path) -> None:
    feats = FaceExtractor(FaceConfig(fps=5.0, max_side=64)).extract(
        MediaItem(video_id="a", path=str(media_dir / "a.mp4")))
    assert feats.n_rows == 5
    assert feats.mask is not None
    assert not feats.mask.any()
    assert feats.attrs["no_face"] is True
    assert feats.attrs["faces_found"] == 0


def test_tracker_keeps_ids_by_overlap_and_drops_extra_tracks() -> None:
    tracker = FaceTracker(max_tracks=2, min_iou=0.3)
    a, b = Detection(0.1, 0.1, 0.2, 0.2, 0.9), Detection(0.6, 0.6, 0.1, 0.1, 0.9)
    assert tracker.assign([a, b]) == {0: a, 1: b}
    b2, a2 = Detection(0.61, 0.6, 0.1, 0.1, 0.9), Detection(0.12, 0.1, 0.2, 0.2, 0.9)
    assert tracker.assign([b2, a2]) == {0: a2, 1: b2}
    tracker.assign([Detection(0.4, 0.0, 0.05, 0.05, 0.9)])
    assert tracker.dropped == 1


def test_thresholds_are_in_the_fingerprint() -> None:
    base = FaceConfig()
    assert base.replace(min_detection_confidence=0.7).fingerprint() != base.fingerprint()
    assert base.replace(policy="all").fingerprint() != base.fingerprint()
    assert base.replace(batch_size=3).fingerprint() == base.fingerprint()
