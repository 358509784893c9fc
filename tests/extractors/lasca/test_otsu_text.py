"""Otsu salience (vs scikit-image) and the deterministic B.3 templates of ``lasca-text``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affectcache.extractors import FeatureArray, MediaItem
from affectcache.extractors.lasca.lexicon import lasca_feature_names, load_lexicon
from affectcache.extractors.lasca.otsu import otsu_threshold, salient_mask
from affectcache.extractors.lasca.text import (
    END_OF_TEXT,
    LascaTextConfig,
    LascaTextExtractor,
    multimodal_text,
    unimodal_text,
)

FEATURES = list(lasca_feature_names())


@pytest.mark.parametrize("seed", range(8))
def test_otsu_matches_scikit_image(seed: int) -> None:
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(seed)
    # Bimodal, skewed, tiny and LaScA-sized (67 values in [0, 1]) inputs.
    for values in (np.concatenate([rng.normal(0.2, 0.05, 40), rng.normal(0.7, 0.1, 27)]),
                   rng.exponential(1.0, 500), rng.random(5), rng.random(67)):
        assert otsu_threshold(values) == pytest.approx(threshold_otsu(values), rel=1e-12, abs=1e-12)
        assert otsu_threshold(values, nbins=32) == pytest.approx(threshold_otsu(values, nbins=32), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=80))
def test_otsu_property_matches_scikit_image(values: list[float]) -> None:
    from skimage.filters import threshold_otsu

    x = np.asarray(values)
    if np.ptp(x) == 0:
        assert otsu_threshold(x) == x[0]
        assert not salient_mask(x).any()
    elif not np.all(np.diff(np.linspace(x.min(), x.max(), 257)) > 0):
        assert otsu_threshold(x) == x.min()  # too narrow for 256 bins, where scikit-image raises
    else:
        assert otsu_threshold(x) == pytest.approx(threshold_otsu(x), abs=1e-12)


def test_otsu_on_a_range_too_narrow_for_the_bins() -> None:
    # scikit-image raises here ("Too many bins for data range"); the minimum splits the values.
    assert otsu_threshold([0.0, 5e-324]) == 0.0
    assert salient_mask([0.0, 5e-324, 0.0]).tolist() == [False, True, False]


def test_otsu_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        otsu_threshold([])
    with pytest.raises(ValueError, match="finite"):
        otsu_threshold([0.1, np.nan])


def test_templates_follow_b3() -> None:
    face = unimodal_text(["left smile smirk positivity", "jaw drop shock surprise"])
    audio = unimodal_text(["high arousal energy"])
    assert face == f"left smile smirk positivity, jaw drop shock surprise {END_OF_TEXT}"
    assert multimodal_text(face, audio) == (
        f"left smile smirk positivity, jaw drop shock surprise | high arousal energy {END_OF_TEXT}")
    assert multimodal_text(face, audio).count(END_OF_TEXT) == 1
    assert unimodal_text([]) == END_OF_TEXT


def _windows(values: np.ndarray, face_valid: list[bool] | None = None) -> FeatureArray:
    n = values.shape[0]
    return FeatureArray(video_id="v", kind="segment", values=values.astype(np.float32),
                        start_s=np.arange(n) * 5.0, end_s=np.arange(n) * 5.0 + 5.0, mask=np.ones(n, bool),
                        attrs={"features": FEATURES, "face_valid": face_valid or [True] * n,
                               "audio_valid": [True] * n})


def test_window_text_names_exactly_the_salient_features_in_feature_order() -> None:
    lex = load_lexicon("lasca-paper")
    row = np.full(len(FEATURES), 0.05)
    hot = ["Face_mouthSmileRight", "Face_browInnerUp", "mfcc_0"]
    for name in hot:
        row[FEATURES.index(name)] = 0.9
    row[FEATURES.index("mfcc_5")] = 0.8
    ext = LascaTextExtractor(LascaTextConfig())
    feats = ext.extract(MediaItem(video_id="v", path="unused"), {"lasca-windows": _windows(row[None, :])})
    text = str(feats.values[0])
    # browInnerUp comes before mouthSmileRight: MediaPipe's feature order, not the order of activation.
    assert text == (f"{lex.label('Face_browInnerUp')}, {lex.label('Face_mouthSmileRight')} | "
                    f"{lex.label('mfcc_0')}, {lex.label('mfcc_5')} {END_OF_TEXT}")
    facial = LascaTextExtractor(LascaTextConfig(template="facial"))
    assert facial.window_text(row, FEATURES).endswith(f"{lex.label('Face_mouthSmileRight')} {END_OF_TEXT}")
    names = LascaTextExtractor(LascaTextConfig(lexicon="feature-name", template="audio"))
    assert names.window_text(row, FEATURES) == f"mfcc 0, mfcc 5 {END_OF_TEXT}"


def test_window_texts_are_deterministic_and_invalid_face_gives_no_facial_cues() -> None:
    rng = np.random.default_rng(3)
    values = rng.random((6, len(FEATURES)))
    ext = LascaTextExtractor(LascaTextConfig())
    item = MediaItem(video_id="v", path="unused")
    first = ext.extract(item, {"lasca-windows": _windows(values)})
    again = LascaTextExtractor(LascaTextConfig()).extract(item, {"lasca-windows": _windows(values.copy())})
    assert list(first.values) == list(again.values)
    assert len(set(first.values)) == 6  # random rows: different cues
    no_face = ext.extract(item, {"lasca-windows": _windows(values, face_valid=[False] * 6)})
    assert all(str(t).startswith("| ") for t in no_face.values)
    assert all(str(t).endswith(END_OF_TEXT) and str(t).count(END_OF_TEXT) == 1 for t in no_face.values)


def test_lexicon_content_is_part_of_the_fingerprint() -> None:
    paper = LascaTextExtractor(LascaTextConfig())
    names = LascaTextExtractor(LascaTextConfig(lexicon="feature-name"))
    ups = {"lasca-windows": "f" * 64}
    assert paper.fingerprint(ups) != names.fingerprint(ups)
    assert paper.model_info()["sha256"] == load_lexicon("lasca-paper").sha256
