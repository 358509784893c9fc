"""VA runs end to end on the planted store: run folders, provenance refusal, predictions into the store,
the ABAW submission round trip, and the command line."""

from __future__ import annotations

import csv
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner

from affectcache.extractors.core.errors import ConfigError
from affectcache.store.errors import ProvenanceMismatchError, StoreError
from affectcache.store.manifest import load_manifest
from affectcache.store.status import store_status
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.loop import load_checkpoint
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.predict import RAS_SMOOTHING, predict_to_store
from affectcache.trainers.submission import read_template, write_abaw_submission
from affectcache.trainers.va import evaluate_va, train_va
from tests.trainers.va_store import write_inputs

if TYPE_CHECKING:
    from pathlib import Path

FACE = {"input_modality": "face-emb", "input_columns": None, "hidden": 16, "n_heads": 2, "n_layers": 1,
        "window": 100, "hop": 50, "epochs": 4, "lr": 3e-3, "train_on_filled": True, "bootstrap_resamples": 50}
BEHAVIOUR = {"input_modality": "beh-emb", "d_model": 16, "n_layers": 1, "head_hidden": 16, "window": 6,
             "stride": 3, "epochs": 2, "lr": 3e-3, "bootstrap_resamples": 50}
AUDIO = {"input_modality": "audio-frames", "attn_hidden": 8, "head_hidden": 16, "epochs": 2, "lr": 3e-3,
         "ema_decay": 0.9, "bootstrap_resamples": 50}


def _config(name: str, fields: dict[str, Any]) -> Any:
    return get_model_spec(name).config_type(**fields)


def _open(paths: tuple[Path, Path]) -> tuple[FeatureStore, Any]:
    return FeatureStore(paths[0]), load_manifest(paths[1])


def test_face_run_folder_predict_submit_and_provenance(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    run_dir = tmp_path / "run"
    run = train_va("ras-face", fs, manifest, run_dir, config=_config("ras-face", FACE))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "done"
    assert record["model"] == "ras-face"
    assert record["inputs"]["face-emb"]["fingerprint"] == fs.provenance("face-emb")["config_fingerprint"]
    assert set(record["splits"]) == {"train", "val", "test"}
    assert len(record["inputs"]["labels_sha256"]) == 64
    assert record["results"]["val"]["va_score"] > 0.5  # the planted signal is learnable in 4 epochs
    ci = record["results"]["val"]["ccc_valence"]
    assert ci["low"] <= ci["value"] <= ci["high"]
    assert {"best.pt", "last.pt", "metrics.csv", "metrics.jsonl", "config.yaml", "results.json",
            "per_video_val.csv", "per_video_test.csv"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "plots" / "traces.png").stat().st_size > 1000
    assert (run_dir / "plots" / "ccc_per_video.png").stat().st_size > 1000
    per_video = list(csv.DictReader((run_dir / "per_video_val.csv").open()))
    assert [r["video_id"] for r in per_video] == ["vid05", "vid06"]
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == run.record["fit"]["best_epoch"]

    # Training again into the same folder resumes (nothing left to do); another config is refused.
    again = train_va("ras-face", fs, manifest, run_dir, config=_config("ras-face", FACE))
    assert again.record["fit"] == record["fit"]
    with pytest.raises(ConfigError, match="another config"):
        train_va("ras-face", fs, manifest, run_dir, config=_config("ras-face", {**FACE, "lr": 1e-3}))

    # Evaluating the saved best model on a labelled split reproduces the run's own test scores.
    evaluated = evaluate_va(run_dir, fs, manifest, split="test")
    assert evaluated["va_score"] == pytest.approx(record["results"]["test"]["va_score"], abs=1e-9)
    assert (run_dir / "eval-test.json").exists()

    # Predictions into the store: frame rows on the label clock, predictions then the 16-d embedding.
    report = predict_to_store(run_dir, fs, manifest, modality="pred-face", smoothing=RAS_SMOOTHING)
    assert report.videos == tuple(f"vid{i:02d}" for i in range(8))
    entry = fs.read("pred-face", "vid07")
    assert entry.values.shape == (400, 2 + 16)
    assert list(entry.attrs["columns"][:3]) == ["valence", "arousal", "embedding_0"]
    assert np.abs(entry.values[:, :2]).max() <= 1.0
    np.testing.assert_allclose(entry.time_s, fs.read("labels/valence", "vid07").time_s)
    prov = fs.provenance("pred-face")
    assert prov["upstream"]["face-emb"] == fs.provenance("face-emb")["config_fingerprint"]
    assert prov["model"]["revision"] == str(record["fit"]["best_epoch"])
    status = {s.name: s for s in store_status(fs, manifest)}
    assert not status["pred-face"].stale

    # ABAW submission round trip: template order kept, 1-based image numbers, values from the store.
    template = tmp_path / "template.txt"
    picks = [("vid07", 1), ("vid07", 400), ("vid05", 17), ("vid07", 2)]
    template.write_text("image_location,valence,arousal\n" +
                        "".join(f"{v}/{n:05d}.jpg,0.5,-0.5\n" for v, n in picks))
    out = tmp_path / "submission.txt"
    sub = write_abaw_submission(fs, "pred-face", template, out)
    assert sub.rows == 4
    lines = out.read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal"
    for line, (vid, number) in zip(lines[1:], picks, strict=True):
        loc, v, a = line.split(",")
        assert loc == f"{vid}/{number:05d}.jpg"
        stored = fs.read("pred-face", vid).values[number - 1, :2]
        np.testing.assert_allclose([float(v), float(a)], stored, atol=1e-6)
    assert read_template(out) == picks  # the file reads back as a template of the same frames
    template.write_text("image_location,valence,arousal\nvid07/00401.jpg,0,0\nnope/00001.jpg,0,0\n")
    with pytest.raises(StoreError, match=r"2 template frames have no prediction.*vid07/00401.jpg.*nope"):
        write_abaw_submission(fs, "pred-face", template, tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()

    # Rebuilding the input: the predictions show stale, training or predicting with the run is refused.
    write_inputs(fs, list(manifest.ids()), face_config="b")
    status = {s.name: s for s in store_status(fs, manifest)}
    assert "upstream face-emb was rebuilt" in next(iter(status["pred-face"].stale.values()))
    with pytest.raises(ProvenanceMismatchError, match="face-emb"):
        train_va("ras-face", fs, manifest, run_dir, config=_config("ras-face", FACE))
    with pytest.raises(ProvenanceMismatchError, match="face-emb"):
        predict_to_store(run_dir, fs, manifest, modality="pred-face-2")


def test_same_seed_same_run_metrics(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    config = _config("ras-face", {**FACE, "epochs": 1})
    a = train_va("ras-face", fs, manifest, tmp_path / "a", config=config)
    b = train_va("ras-face", fs, manifest, tmp_path / "b", config=config)
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("va_score") == 1
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["train_loss"], r["va_score"]) for r in rows_a] == [
        (r["train_loss"], r["va_score"]) for r in rows_b]
    assert a.record["results"] == b.record["results"]


@pytest.mark.parametrize(("name", "fields", "width"),
                         [("ras-behaviour", BEHAVIOUR, 16), ("ras-audio", AUDIO, 16)])
def test_behaviour_and_audio_runs_predict_frames(va_store: tuple[Path, Path], tmp_path: Path, name: str,
                                                 fields: dict[str, Any], width: int) -> None:
    fs, manifest = _open(va_store)
    run = train_va(name, fs, manifest, tmp_path / name, config=_config(name, fields))
    scores = run.record["results"]["val"]
    assert np.isfinite(scores["va_score"])
    assert run.record["fit"]["epochs_run"] == fields["epochs"]
    report = predict_to_store(tmp_path / name, fs, manifest, modality=f"pred-{name}", splits=["val"])
    assert report.videos == ("vid05", "vid06")
    entry = fs.read(f"pred-{name}", "vid05")
    assert entry.values.shape == (400, 2 + width)
    assert np.isfinite(entry.values).all()


def test_refusals_name_the_problem(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    with pytest.raises(StoreError, match="no-such-modality"):
        train_va("ras-face", fs, manifest, tmp_path / "x",
                 config=_config("ras-face", {**FACE, "input_modality": "no-such-modality"}))
    with pytest.raises(StoreError, match="do not fit face-emb's 12 values"):
        train_va("ras-face", fs, manifest, tmp_path / "y",
                 config=_config("ras-face", {**FACE, "input_columns": (0, 256)}))
    with pytest.raises(StoreError, match="not a VA run"):
        predict_to_store(tmp_path, fs, manifest)


def test_cli_show_config_train_predict_submit(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    from affectcache.cli.main import app

    runner = CliRunner()
    shown = runner.invoke(app, ["train", "show-config", "ras-behaviour"])
    assert shown.exit_code == 0, shown.output
    assert "window: 16" in shown.output
    assert "# Segments per training sequence." in shown.output
    bad = runner.invoke(app, ["train", "show-config", "nope"])
    assert bad.exit_code == 2
    assert "available" in bad.output
    store, manifest = va_store
    sets = [a for k, v in {**FACE, "epochs": 2}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    trained = runner.invoke(app, ["train", "ras-face", "-s", str(store), "-m", str(manifest), "-o",
                                  str(tmp_path / "run"), *sets])
    assert trained.exit_code == 0, trained.output
    assert re.search(r"^val +-?\d\.\d{3} \[.*\] +-?\d\.\d{3} +\d+ +\d+$", trained.output,
                     re.M), trained.output
    assert "CCC valence" in trained.output
    # evaluate prints the same table as train (one formatter), for the asked split.
    evaluated = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "run"), "-s", str(store), "-m",
                                    str(manifest), "--split", "test"])
    assert evaluated.exit_code == 0, evaluated.output
    header = trained.output.splitlines()[0].split()
    assert evaluated.output.splitlines()[0].split() == header
    assert header == ["split", "CCC", "valence", "CCC", "arousal", "va_score", "videos", "frames"]
    assert re.search(r"^test +-?\d\.\d{3} \[.*\] +-?\d\.\d{3} +1 +\d+$", evaluated.output,
                     re.M), evaluated.output
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), "-s", str(store), "-m", str(manifest),
                                    "--split", "test", "--modality", "pred-cli", "--smooth"])
    assert predicted.exit_code == 0, predicted.output
    assert "pred-cli: 1 videos" in predicted.output
    template = tmp_path / "t.txt"
    template.write_text("image_location,valence,arousal\nvid07/00003.jpg,0,0\n")
    submitted = runner.invoke(app, ["submit", "abaw", "pred-cli", "-s", str(store), "--template",
                                    str(template), "--out", str(tmp_path / "sub.txt")])
    assert submitted.exit_code == 0, submitted.output
    assert (tmp_path / "sub.txt").read_text().splitlines()[1].startswith("vid07/00003.jpg,")
    refused = runner.invoke(app, ["train", "ras-face", "-s", str(store), "-m", str(manifest), "-o",
                                  str(tmp_path / "run2"), "--set", "window=0"])
    assert refused.exit_code == 2
    assert "window" in refused.output
