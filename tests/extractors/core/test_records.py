"""FeatureArray printing: a summary of the entry, never its arrays."""

from __future__ import annotations

import numpy as np

from affectcache.extractors import FeatureArray


def test_printing_a_feature_array_shows_a_summary() -> None:
    n = 3000
    feats = FeatureArray(video_id="v1", kind="frame", values=np.full((n, 52), 0.123456, np.float32),
                         frame=np.arange(n), time_s=np.arange(n) / 25, mask=np.arange(n) % 3 > 0,
                         attrs={"warning": "few faces", "fps": 25.0})
    text = repr(feats)
    assert text == ("FeatureArray('v1', kind='frame', n_rows=3000, values=(3000, 52) float32, "
                    "0.000..119.960 s, masked=1000, attrs=['fps', 'warning'])")
    assert str(feats) == text
    assert "0.123" not in text  # no values
    seg = FeatureArray(video_id="v2", kind="segment", values=np.zeros((2, 4), np.float16),
                       start_s=np.array([1.0, 3.0]), end_s=np.array([6.0, 5.5]))
    assert repr(seg) == ("FeatureArray('v2', kind='segment', n_rows=2, values=(2, 4) float16, "
                         "1.000..6.000 s, masked=0, attrs=[])")
    empty = FeatureArray(video_id="v3", kind="segment", values=np.zeros((0, 4), np.float32),
                         start_s=np.zeros(0), end_s=np.zeros(0))
    assert "n_rows=0" in repr(empty)
    assert "no rows" in repr(empty)
