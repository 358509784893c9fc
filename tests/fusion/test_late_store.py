"""``affectcache fuse late`` on prediction modalities of the planted VA store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from typer.testing import CliRunner

from affectcache.extractors.core.records import FeatureArray
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.trainers.va_store import DURATION_S, FPS, labels_of, provenance

if TYPE_CHECKING:
    from pathlib import Path


def test_fuse_late_writes_weights_chosen_on_val(va_store: tuple[Path, Path]) -> None:
    from affectcache.cli.main import app

    store, manifest_path = va_store
    fs = FeatureStore(store)
    manifest = load_manifest(manifest_path)
    rng = np.random.default_rng(3)
    # truth = 0.6·a + 0.4·b for valence (a, b carry independent halves of the error); c is noise;
    # arousal is all in c.
    for name in ("pred-a", "pred-b", "pred-c"):
        fs.init_modality(name, provenance(name, "frame", {"columns": ["valence", "arousal", "e0"]}),
                         overwrite=True)
    items = list(manifest)
    for i, it in enumerate(items):
        t = np.arange(int(DURATION_S * FPS)) / FPS
        v, a = labels_of(i, t)
        e = rng.normal(scale=0.3, size=t.size)
        cols = {"pred-a": (v + 0.4 * e, rng.normal(size=t.size)),
                "pred-b": (v - 0.6 * e, rng.normal(size=t.size)), "pred-c": (rng.normal(size=t.size), a)}
        for name, (pv, pa) in cols.items():
            values = np.stack([pv, pa, np.zeros_like(t)], 1).astype(np.float32)
            fs.write(name, FeatureArray(video_id=it.video_id, kind="frame", values=values,
                                        frame=np.arange(t.size), time_s=t))
    result = CliRunner().invoke(app, ["fuse", "late", "pred-a", "pred-b", "pred-c", "-s", str(store), "-m",
                                      str(manifest_path), "--out", "pred-late"])
    assert result.exit_code == 0, result.output
    prov = FeatureStore(store).provenance("pred-late")
    choice = prov["config"]["choice"]
    weights_v = dict(zip(choice["models"], choice["weights_valence"], strict=True))
    weights_a = dict(zip(choice["models"], choice["weights_arousal"], strict=True))
    assert weights_v["pred-a"] == 0.6  # the error cancels exactly at 0.6 / 0.4 (grid step 0.05)
    assert weights_v["pred-b"] == 0.4
    assert weights_a["pred-c"] == 1.0
    assert set(prov["upstream"]) == {"pred-a", "pred-b", "pred-c"}
    assert choice["ccc_valence"] > 0.99
    fused = FeatureStore(store).load("pred-late", [items[0].video_id])
    assert fused.values.shape[1] == 2
    refused = CliRunner().invoke(app, ["fuse", "late", "pred-a", "-s", str(store), "-m", str(manifest_path)])
    assert refused.exit_code != 0
    assert "at least two" in refused.output
