"""``train_mcdm`` end to end on planted corpora: run folder, Table 1 row, MELD, resume, refusals; the
loop's task-state hook; the registry and the CLI command."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from affectcache.extractors.core.errors import ConfigError
from affectcache.store.errors import ProvenanceMismatchError
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.loop import LAST_CHECKPOINT, fit, load_checkpoint
from affectcache.trainers.mcdm.config import MCDMTrainConfig, demo_config
from affectcache.trainers.mcdm.data import ClipDataset
from affectcache.trainers.mcdm.run import TABLE_COLUMNS, load_corpora, train_mcdm
from affectcache.trainers.mcdm.synthetic import AUDIO, FACE, write_corpora, write_corpus
from affectcache.trainers.mcdm.task import MultitaskTask
from affectcache.trainers.models import get_model_spec

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.trainers.mcdm.synthetic import PlantedCorpus


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlantedCorpus]:
    return write_corpora(tmp_path_factory.mktemp("planted"), n=40, seed=0, signal=2.0)


def _config(**changes: Any) -> MCDMTrainConfig:
    fields: dict[str, Any] = {"modalities": ("face", "audio"), "input_dims": (1, 1), "sources": (FACE, AUDIO),
                              "epochs": 3, "bootstrap_resamples": 20}
    return demo_config(**{**fields, **changes})


def _corpora(planted: dict[str, PlantedCorpus], names: tuple[str, ...] = ("mosei", "fiv2", "bah"),
             ) -> list[tuple[FeatureStore, Any]]:
    return [(FeatureStore(str(planted[n].store), read_only=True), load_manifest(planted[n].manifest))
            for n in names]


def test_mcdm_and_mcdm1_are_registered_with_the_authors_defaults() -> None:
    spec = get_model_spec("mcdm")
    config = spec.config_type()
    assert isinstance(config, MCDMTrainConfig)
    assert (config.graph, config.optimizer, config.lr, config.weight_decay, config.batch_size) == (
        "unitary", "adam", 1e-4, 1e-5, 32)
    assert (config.plateau_factor, config.plateau_patience, config.early_stop_patience) == (0.5, 2, 15)
    assert get_model_spec("mcdm-1").config_type().graph == "attention"
    dims = {"face": 1024, "audio": 1536, "text": 1536, "behaviour": 1536}
    assert sum(p.numel() for p in spec.build(config, dims).parameters()) == 9_753_998
    with pytest.raises(ValueError, match="lacks inputs"):
        config.model_config({"face": 4})


def test_train_writes_the_run_folder_and_a_table_row(planted: dict[str, PlantedCorpus], tmp_path: Path,
                                                     ) -> None:
    meld = (FeatureStore(str(planted["meld"].store), read_only=True), load_manifest(planted["meld"].manifest))
    run = train_mcdm("mcdm", _corpora(planted), tmp_path / "run", config=_config(), meld=meld)
    folder = run.run_dir
    for name in ("run.json", "config.yaml", "metrics.csv", "best.pt", "last.pt", "results.json",
                 "results.md", "results.csv", "plots/meld_confusion.png"):
        assert (folder / name).exists(), name
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "done"
    assert record["input_dims"] == {"face": 16, "audio": 12}
    assert record["examples"]["mosei"]["labelled"] == {"emotion": 40, "personality": 0, "ah": 0}
    test = record["results"]["test"]
    for key in ("mosei_mwacc", "mosei_mmf1", "fiv2_macc", "fiv2_mccc", "bah_mf1", "bah_uar"):
        assert test[key]["low"] <= test[key]["value"] <= test[key]["high"], key
    assert record["results"]["meld"]["meld_mf1"]["n"] == 40
    header = (folder / "results.md").read_text().splitlines()[0]
    assert all(column in header for column, _ in TABLE_COLUMNS)
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3
    assert {"mean_all", "w_emo_sup", "w_per_ssl"} <= set(history[0])
    # Supervised weights sum to the wallet's budget once every task has been seen.
    assert sum(history[-1][f"w_{k}"] for k in ("emo_sup", "per_sup", "ah_sup")) == pytest.approx(3.0)
    # Again into the same folder: resumes (nothing left to do); another config is refused.
    again = train_mcdm("mcdm", _corpora(planted), folder, config=_config(), meld=meld)
    assert again.record["fit"]["epochs_run"] == 3
    with pytest.raises(ConfigError, match="another config"):
        train_mcdm("mcdm", _corpora(planted), folder, config=_config(lambda_ssl=0.2))


def test_changed_inputs_are_refused(planted: dict[str, PlantedCorpus], tmp_path: Path) -> None:
    root = tmp_path / "own"
    root.mkdir()
    own = {n: write_corpus(n, root, n=20, seed=1) for n in ("mosei", "bah")}
    corpora = [(FeatureStore(str(own[n].store), read_only=True), load_manifest(own[n].manifest))
               for n in ("mosei", "bah")]
    train_mcdm("mcdm", corpora, tmp_path / "run", config=_config(epochs=1))
    write_corpus("bah", root, n=20, seed=2)   # rebuilt with another seed: another fingerprint and labels
    corpora[1] = (FeatureStore(str(own["bah"].store), read_only=True), load_manifest(own["bah"].manifest))
    with pytest.raises(ProvenanceMismatchError, match="differ"):
        train_mcdm("mcdm", corpora, tmp_path / "run", config=_config(epochs=1))


def test_the_loop_saves_and_restores_gradnorm_state(planted: dict[str, PlantedCorpus], tmp_path: Path,
                                                    ) -> None:
    config = _config(epochs=2)
    dataset = ClipDataset(load_corpora(_corpora(planted), config))
    torch.manual_seed(0)
    model = get_model_spec("mcdm").build(config, dataset.modality_dims)
    task = MultitaskTask(config, dataset)
    fit(model, task, config, tmp_path)
    saved = load_checkpoint(tmp_path / LAST_CHECKPOINT)["task"]
    assert saved == task.state_dict()
    assert saved["supervised"]["weights"] != {"emo_sup": 1.0, "per_sup": 1.0, "ah_sup": 1.0}
    fresh = MultitaskTask(config, dataset)
    fit(model, fresh, config, tmp_path)          # resumes after the last epoch: only restores state
    assert fresh.gradnorm.weights == task.gradnorm.weights


def test_train_mcdm_command(planted: dict[str, PlantedCorpus], tmp_path: Path) -> None:
    from affectcache.cli.main import app

    args = ["train", "mcdm", "-s", str(planted["mosei"].store), "-m", str(planted["mosei"].manifest),
            "-s", str(planted["bah"].store), "-m", str(planted["bah"].manifest), "--preset", "demo",
            "--set", "modalities=[face, audio]", "--set", "input_dims=[1, 1]",
            "--set", f"sources=[{FACE}, {AUDIO}]", "--set", "epochs=1", "--set", "bootstrap_resamples=5",
            "-o", str(tmp_path / "cli-run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mean_all" in result.output
    assert (tmp_path / "cli-run" / "results.md").exists()
    record = json.loads((tmp_path / "cli-run" / "run.json").read_text())
    assert sorted(record["examples"]) == ["bah", "mosei"]
    assert np.isnan(record["results"]["test"].get("fiv2_macc", {"value": np.nan})["value"])


def test_table1_grid_and_ranks() -> None:
    from affectcache.trainers.mcdm.ablate import average_ranks, table1_grid

    labels = [label for label, _ in table1_grid(_config())]
    assert labels == ["MCDM-1", "MCDM-2", "w/o task projectors", "w/o graph", "w/o attention",
                      "w/o guide bank", "w/o face", "w/o audio", "w/o ER task", "w/o PTR task",
                      "w/o AHR task"]
    rows = [{"MOSEI mMF1": 60.0, "BAH MF1": 70.0}, {"MOSEI mMF1": 62.0, "BAH MF1": 70.0},
            {"MOSEI mMF1": None, "BAH MF1": 50.0}]
    assert average_ranks(rows) == [pytest.approx((2 + 1.5) / 2), pytest.approx((1 + 1.5) / 2), 3.0]


def test_ablate_command_writes_the_whole_table(planted: dict[str, PlantedCorpus], tmp_path: Path) -> None:
    from affectcache.cli.main import app

    grid = tmp_path / "grid.yaml"
    grid.write_text("MCDM-2: {}\nw/o AHR task: {active_tasks: [emotion, personality]}\n")
    args = ["ablate", "mcdm", "--grid", str(grid), "--preset", "demo", "-o", str(tmp_path / "abl"),
            "--set", "modalities=[face, audio]", "--set", "input_dims=[1, 1]",
            "--set", f"sources=[{FACE}, {AUDIO}]", "--set", "epochs=1", "--set", "bootstrap_resamples=5"]
    for name in ("mosei", "bah"):
        args += ["-s", str(planted[name].store), "-m", str(planted[name].manifest)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "abl" / "results.md").read_text().splitlines()
    assert len(lines) == 4
    assert lines[3].startswith("| w/o AHR task | V+A | MCDM-2 |")
    assert "BAH MF1" in lines[0]
    assert "rank" in lines[0]
    assert (tmp_path / "abl" / "w-o-ahr-task" / "run.json").exists()
    # The row without the A/H task has no BAH figures.
    assert lines[3].split("|")[7].strip() == "—"


def test_demo_reports_every_task_beside_its_baseline_and_chance(tmp_path: Path) -> None:
    from affectcache.trainers.mcdm.demo import FIGURES, run_demo

    report = run_demo(tmp_path, clips=30, epochs=2, media=False)
    assert [r["figure"] for r in report.rows][: len(FIGURES)] == list(FIGURES)
    for row in report.rows[: len(FIGURES)]:
        assert row["single_task"] is not None
        assert row["above_chance"] == (row["low"] > row["chance"])
    # Chance of a trait CCC is about 0, of a weighted accuracy about 0.5 (permuted outputs).
    chance = {r["figure"]: r["chance"] for r in report.rows}
    assert abs(chance["fiv2_mccc"]) < 0.3
    assert 0.3 < chance["mosei_mwacc"] < 0.7
    assert (tmp_path / "demo.md").read_text() == report.table
    assert (tmp_path / "single-ah" / "run.json").exists()


def test_media_corpus_goes_through_clips_and_extractors(tmp_path: Path) -> None:
    from affectcache.trainers.mcdm.synthetic import MEDIA_INPUTS, write_media_corpus

    corpus = write_media_corpus("bah", tmp_path, n=6, duration_s=1.0)
    fs = FeatureStore(str(corpus.store), read_only=True)
    manifest = load_manifest(corpus.manifest)
    assert all((tmp_path / "media" / "bah" / f"{vid}.mp4").exists() for vid in manifest.ids())
    config = _config(sources=tuple(MEDIA_INPUTS.values()))
    (loaded,) = load_corpora([(fs, manifest)], config)
    assert loaded.labels.counts()["ah"] == 6
    for name in MEDIA_INPUTS:
        assert loaded.features[name].present.all()
    # Dark, high-pitched clips (A/H) and light, low ones differ in their MFCC means.
    ah = loaded.labels.ah.astype(bool)
    mfcc = loaded.features["audio"].values
    if ah.any() and (~ah).any():
        assert np.abs(mfcc[ah].mean(0) - mfcc[~ah].mean(0)).max() > 1.0
