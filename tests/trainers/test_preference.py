"""Preference learner: pair construction edge cases, window labels, training, Wilcoxon, run provenance."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

from affectcache.cli.main import app
from affectcache.extractors import FeatureArray
from affectcache.store.errors import ProvenanceMismatchError
from affectcache.store.manifest import write_manifest
from affectcache.store.pipelines.lasca import build_lasca
from affectcache.trainers.pairs import preference_pairs, window_labels
from affectcache.trainers.preference import (
    PreferenceConfig,
    VariantResult,
    compare_variants,
    hidden_sizes,
    load_pairs,
    make_model,
)
from affectcache.trainers.runs import evaluate_run, train_preference
from tests.extractors.lasca.store_fixtures import small_store, write_label

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.extractors import MediaItem
    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore


def test_pairs_keep_relative_changes_above_tau_in_both_orders() -> None:
    pairs = preference_pairs([1.0, 1.1, 1.5, 1.5, 0.5], threshold=0.2)
    # 1.0->1.1 is 10 % (dropped), 1.1->1.5 is 36 % (rise), 1.5->1.5 none, 1.5->0.5 is 67 % (fall).
    assert pairs.first.tolist() == [1, 2, 3, 4]
    assert pairs.second.tolist() == [2, 1, 4, 3]
    assert pairs.label.tolist() == [1, 0, 0, 1]
    assert len(preference_pairs([1.0, 1.2], threshold=0.2)) == 0  # exactly tau is not "more than" tau


def test_pairs_around_zero_use_epsilon() -> None:
    assert len(preference_pairs([0.0, 0.0, 0.0], threshold=0.1)) == 0
    # From 0 the denominator is eps: a tiny absolute change counts as a huge relative one...
    assert preference_pairs([0.0, 0.01], threshold=0.1, epsilon=1e-3).label.tolist() == [1, 0]
    # ...unless eps is large enough to make it small.
    assert len(preference_pairs([0.0, 0.01], threshold=0.1, epsilon=0.5)) == 0
    assert preference_pairs([-0.5, -0.2], threshold=0.2).label.tolist() == [1, 0]  # |a(t)| for negatives
    with pytest.raises(ValueError, match="epsilon"):
        preference_pairs([1.0, 2.0], threshold=0.1, epsilon=0.0)


def test_pairs_skip_windows_without_labels() -> None:
    pairs = preference_pairs([0.1, 0.9, 0.1, 0.9], [True, False, True, True], threshold=0.1)
    assert pairs.first.tolist() == [2, 3]
    assert len(preference_pairs([], threshold=0.1)) == 0
    assert len(preference_pairs([0.3], threshold=0.1)) == 0


def test_window_labels_average_valid_frames_only() -> None:
    values = np.array([1.0, 1.0, 9.0, 3.0, 3.0, 3.0])
    track = FeatureArray(video_id="v", kind="frame", values=values, frame=np.arange(6),
                         time_s=np.arange(6) * 1.0,
                         mask=np.array([True, True, False, True, True, True]))
    means, valid = window_labels(track, [0.0, 3.0, 6.0], [3.0, 6.0, 9.0])
    assert means[:2].tolist() == [1.0, 3.0]
    assert valid.tolist() == [True, True, False]


def test_mlp_has_the_papers_settings() -> None:
    assert hidden_sizes(451) == (225, 112)
    assert hidden_sizes(2000) == (250, 125)
    params = make_model(451, PreferenceConfig(), seed=0).get_params()
    assert params["hidden_layer_sizes"] == (225, 112)
    assert (params["solver"], params["max_iter"], params["alpha"], params["tol"]) == ("adam", 25, 1.0, 1e-3)
    assert params["shuffle"]
    assert params["early_stopping"]
    assert params["n_iter_no_change"] == 3


def test_wilcoxon_between_variants() -> None:
    better = VariantResult(variant="fused", accuracies=(0.8, 0.82, 0.79, 0.85, 0.81, 0.84, 0.8, 0.83),
                           n_test=(10,) * 8)
    worse = VariantResult(variant="text", accuracies=(0.5, 0.52, 0.49, 0.55, 0.5, 0.51, 0.48, 0.53),
                          n_test=(10,) * 8)
    same = VariantResult(variant="features", accuracies=better.accuracies, n_test=(10,) * 8)
    fused_text, fused_same, _ = compare_variants([better, worse, same])
    assert fused_text.significant
    assert fused_text.mean_difference > 0.25
    assert fused_same.p_value == 1.0
    assert not fused_same.significant


SPLITS = {f"v{i}": ("train" if i < 6 else "test") for i in range(8)}


def _plant_arousal(fs: FeatureStore, item: MediaItem, seed: int) -> None:
    """Arousal: one random level per 3 s; every MFCC coefficient follows it (plus the random rows)."""
    levels = np.repeat(np.random.default_rng(seed).uniform(-1, 1, 11), 300)[:3000]
    mfcc = fs.read("mfcc", item.video_id)
    values = (mfcc.values * 0.2 + levels[:, None] * 2.0).astype(np.float32)
    fs.write("mfcc", FeatureArray(video_id=item.video_id, kind="frame", values=values, frame=mfcc.frame,
                                  time_s=mfcc.time_s, mask=mfcc.mask), source=item.source_info())
    write_label(fs, item, "arousal", levels[::4])  # 25 fps


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, Manifest, Path]:
    """8 videos of 30 s whose MFCCs follow a planted arousal, and a 9th (train) without an audio track;
    the LaScA chain built on 3 s windows."""
    root = tmp_path_factory.mktemp("planted")
    fs, manifest = small_store(root, splits={**SPLITS, "v8": "train"}, duration_s=30.0)
    for i, item in enumerate(manifest):
        _plant_arousal(fs, item, seed=100 + i)
    fs.delete("mfcc", ["v8"])
    fs.record_failures("mfcc", {"v8": {"error": "MediaError", "message": "v8.bin: no audio stream",
                                       "not_applicable": True}})
    build_lasca(fs, manifest, window_s=3.0)
    manifest_path = write_manifest(manifest, root / "manifest.jsonl")
    return fs, manifest, manifest_path


def test_features_carry_the_planted_arousal(planted: tuple[FeatureStore, Manifest, Path],
                                            tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs, manifest, _ = planted
    # 8 videos give ~140 pairs: 25 epochs need small batches to take enough Adam steps.
    config = PreferenceConfig(threshold=0.1, n_folds=3, batch_size=16, variants=("features", "fused"))
    pairs = load_pairs(fs, manifest, config)
    assert pairs.inputs["features"].shape[1] == 67
    assert pairs.inputs["fused"].shape[1] == 67 + 384
    assert set(np.unique(pairs.label)) == {0, 1}
    assert pairs.label.mean() == 0.5
    with caplog.at_level("WARNING"):
        run = train_preference(fs, manifest, tmp_path / "run", config=config)
    # The item without audio is left out of the run with one warning naming it and the cause.
    assert "v8" not in run.record["videos"]
    assert len(run.record["videos"]) == 8
    skipped = [r.getMessage() for r in caplog.records if "train preference skips" in r.getMessage()]
    assert skipped == ["train preference skips 1 item that failed or does not apply upstream: "
                       "v8 (lasca-windows does not apply: mfcc does not apply: v8.bin: no audio stream)"]
    by_variant = {r["variant"]: r for r in run.rows}
    assert by_variant["features"]["accuracy_mean"] > 0.9
    assert by_variant["fused"]["accuracy_mean"] > 0.9
    assert by_variant["features"]["n_splits"] == 3
    (comparison,) = run.record["experiments"][0]["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("features", "fused")
    assert 0.0 <= comparison["p_value"] <= 1.0
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| multimodal | Features |" in table
    assert "| multimodal | MiniLM-L6(F) |" in table
    assert "arousal 3s 10%" in table
    assert (tmp_path / "run" / "results.csv").read_text().startswith("modality,model,variant,label")
    evaluated = evaluate_run(tmp_path / "run", fs, manifest, split="test")
    assert {e["variant"] for e in evaluated} == {"features", "fused"}
    assert next(e for e in evaluated if e["variant"] == "features")["accuracy"] > 0.9


def test_a_run_refuses_a_store_whose_inputs_changed(planted: tuple[FeatureStore, Manifest, Path],
                                                    tmp_path: Path) -> None:
    fs, manifest, manifest_path = planted
    runner = CliRunner()
    out = tmp_path / "run"
    evaluate = ["evaluate", "--run", str(out), "-s", fs.url, "-m", str(manifest_path)]
    args = ["train", "preference", "-s", fs.url, "-m", str(manifest_path), "--out", str(out),
            "--label", "arousal",
            "--threshold", "0.1", "--folds", "3", "--variant", "features", "--window-s", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Features" in first.output
    # train and evaluate print the same table (one formatter): training rows over the folds, evaluated
    # rows on the split.
    def header(output: str) -> list[str]:
        return next(x for x in output.splitlines() if x.startswith("label")).split()

    assert header(first.output) == ["label", "threshold", "variant", "model", "split", "accuracy", "pairs"]
    assert re.search(r"^arousal +0\.1 +features +Features +3 splits +\d\.\d{3} ± \d\.\d{3} +\d+$",
                     first.output, re.M), first.output
    shown = runner.invoke(app, evaluate)
    assert header(shown.output) == ["label", "threshold", "variant", "split", "accuracy", "pairs"]
    assert re.search(r"^arousal +0\.1 +features +test +\d\.\d{3} +\d+$", shown.output, re.M), shown.output
    record = json.loads((out / "run.json").read_text())
    assert set(record["inputs"]) == {"lasca-windows", "lasca-embedding", "labels/arousal"}
    assert runner.invoke(app, evaluate).exit_code == 0
    wrong_window = runner.invoke(app, [*args[:-1], "5"])
    assert wrong_window.exit_code == 2
    assert "3.0 s windows" in wrong_window.output
    # Relabel one video: the same run folder and its evaluation are refused.
    original = fs.read("labels/arousal", "v7").values
    write_label(fs, manifest.get("v7"), "arousal", np.ones(750))
    try:
        refused = runner.invoke(app, evaluate)
        assert refused.exit_code == 2
        assert "labels/arousal" in refused.output
        with pytest.raises(ProvenanceMismatchError):
            train_preference(fs, manifest, out, config=PreferenceConfig(variants=("features",), n_folds=3,
                                                                        threshold=0.1))
    finally:
        write_label(fs, manifest.get("v7"), "arousal", original)
    assert runner.invoke(app, evaluate).exit_code == 0
