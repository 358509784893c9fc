"""The VA demo step on a small demo store: wavlm-frames built from its demo config, both heads trained,
predictions written, held-out scores returned."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affectcache.store.pipelines.demo import run_demo
from affectcache.trainers.demo import train_demo_fusion, train_demo_head

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
