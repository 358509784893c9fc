"""open_dataset keeps per-entry attrs and labels the feature axis where the extractor names its columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors.visual.blendshapes import BLENDSHAPE_NAMES
from affectcache.extractors.visual.face import FaceConfig, FaceExtractor, FaceLayout
from affectcache.extractors.visual.grada_face import GradaConfig, GradaFaceExtractor
from tests.extractors.lasca.store_fixtures import small_store

if TYPE_CHECKING:
    from pathlib import Path


def test_open_dataset_names_blendshape_columns_and_keeps_entry_attrs(tmp_path: Path) -> None:
    fs, _ = small_store(tmp_path, splits={"a": "train", "b": "test"})
    ds = fs.open_dataset("blendshapes")
    assert ds["values"].dims == ("row", "feature")
    assert tuple(ds["feature"].values.tolist()) == BLENDSHAPE_NAMES
    jaw = ds["values"].sel(feature="jawOpen").values
    i = ds["video_id"].values.tolist().index("a")
    start, n = int(ds["row_start"][i]), int(ds["n_rows"][i])
    assert np.array_equal(jaw[start:start + n],
                          fs.read("blendshapes", "a").values[:, BLENDSHAPE_NAMES.index("jawOpen")])
    assert ds.attrs["entry_attrs"]["a"]["categories"] == list(BLENDSHAPE_NAMES)
    assert set(ds.attrs["entry_attrs"]) == {"a", "b"}
    # mfcc columns are unnamed: no feature coordinate; mfcc entries carry no attrs.
    mfcc = fs.open_dataset("mfcc")
    assert "feature" not in mfcc.coords
    assert mfcc.attrs["entry_attrs"] == {}


def test_face_and_emotion_column_names_match_their_widths() -> None:
    layout = FaceLayout(slots=2, landmarks=True)
    names = layout.column_names()
    assert len(names) == layout.width
    assert names[:3] == ("n_faces", "face0_x", "face0_y")
    assert names[layout.slot_offset(1)] == "face1_x"
    assert names[layout.landmark_offset(1)] == "face1_lm0_x"
    assert FaceExtractor(FaceConfig()).feature_names() == FaceLayout(slots=1, landmarks=False).column_names()
    grada = GradaFaceExtractor(GradaConfig())
    assert len(grada.feature_names()) == grada.output_dim
    assert grada.feature_names()[-10:-8] == ("valence", "arousal")
    assert grada.feature_names()[-1] == "contempt"
