"""The VA demo step on a small demo store: wavlm-frames built from its demo config, both heads trained,
predictions written, held-out scores returned."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affectcache.store.pipelines.demo import run_demo
from affectcache.trainers.demo import train_demo_fusion, train_demo_head, write_demo_submission
from affectcache.trainers.submission import read_template

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {"n_clips": 6, "min_duration_s": 5.0, "max_duration_s": 7.0, "size": (96, 72)}


def test_demo_heads_train_predict_and_score(tmp_path: Path) -> None:
    result = run_demo(tmp_path, workers=0, extractors=["wavlm-frames", "clip-scene"], corpus=SMALL)
    fs = result.store
    frames = fs.read("wavlm-frames", "demo_000")
    assert frames.time_s is not None
    np.testing.assert_allclose(np.diff(frames.time_s), 0.02, atol=1e-9)
    heads = [train_demo_head(name, fs, result.manifest, tmp_path,
                             overrides={"epochs": 2, "bootstrap_resamples": 20})
             for name in ("ras-face", "ras-audio")]
    assert [(h.model, h.input_modality) for h in heads] == [("ras-face", "clip-scene"),
                                                             ("ras-audio", "wavlm-frames")]
    for head in heads:
        assert head.held_out["split"] == "test"
        assert np.isfinite(head.held_out["va_score"])
        assert (head.run_dir / "run.json").exists()
        assert fs.videos(head.prediction_modality) == result.manifest.ids()
        assert head.summary().startswith(f"on {head.input_modality}: held-out (test) CCC valence")
    fused = train_demo_fusion(fs, result.manifest, tmp_path,
                              overrides={"epochs": 2, "bootstrap_resamples": 20})
    assert fused.input_modality == "pred-ras-face + pred-ras-audio"
    assert np.isfinite(fused.held_out["va_score"])
    assert fs.videos("pred-raav") == result.manifest.ids()
    assert (fused.run_dir / "contributions" / "summary.json").exists()
    # The audio head feeds a frame stream of the reliability gate and the window tokens.
    assert fused.contributions is not None
    assert {label: sorted(shares) for label, shares in fused.contributions.items()} == {
        label: ["audio", "audio-frames", "face"] for label in ("valence", "arousal")}
    assert "; arousal ablation share face " in fused.summary()

    line = write_demo_submission(fs, result.manifest, tmp_path)
    test_videos = [item.video_id for item in result.manifest.items if item.split == "test"]
    template = tmp_path / "submission" / "abaw_template.txt"
    rows = read_template(template)
    expected = [(v, int(f) + 1) for v in test_videos for f in fs.read("labels/valence", v).frame]
    assert rows == expected
    submitted = (tmp_path / "submission" / "pred-raav.txt").read_text().splitlines()
    assert [r.split(",")[0] for r in submitted[1:]] == [f"{v}/{n:05d}.jpg" for v, n in expected]
    first = fs.read("pred-raav", test_videos[0]).values[0, :2]
    np.testing.assert_allclose([float(x) for x in submitted[1].split(",")[1:]], np.clip(first, -1, 1),
                               atol=1e-6)
    assert line.startswith(f"{tmp_path / 'submission' / 'pred-raav.txt'} ({len(expected)} rows, "
                           f"{len(test_videos)} test videos")
