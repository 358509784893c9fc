"""Fusion models trained through part 1's machinery on prediction modalities of the planted VA store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner

from affectcache.extractors.core.records import FeatureArray
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.data.clock import load_clock
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.predict import predict_to_store
from affectcache.trainers.va import read_run, train_va
from affectcache.trainers.va_tasks import make_task
from tests.trainers.va_store import DURATION_S, FPS, labels_of, provenance

if TYPE_CHECKING:
    from pathlib import Path

TINY = {"modalities": ["face", "audio"], "input_modalities": ["pred-face", "pred-audio"], "input_dims": [],
        "experts": ["face>fusion", "audio>fusion"], "hidden": 16, "heads": 2, "layers": 1, "gate_hidden": 16,
        "window": 100, "hop": 50, "epochs": 6, "lr": 3e-3, "bootstrap_resamples": 50}


def _write_predictions(fs: FeatureStore, video_ids: list[str]) -> None:
    """Prediction-like frame modalities: ``pred-face`` (25 fps, valence right, arousal noise, 10 % masked)
    and ``pred-audio`` (10 fps rows: the clock's other frames need the nearest-frame fill)."""
    rng = np.random.default_rng(1)
    for name in ("pred-face", "pred-audio"):
        fs.init_modality(name, provenance(name, "frame", {"toy": name}), overwrite=True)
    for i, vid in enumerate(video_ids):
        t = np.arange(int(DURATION_S * FPS)) / FPS
        v, _ = labels_of(i, t)
        face = np.stack([v, rng.normal(scale=0.5, size=t.size), v + 0.1 * rng.normal(size=t.size)], 1)
        fs.write("pred-face", FeatureArray(video_id=vid, kind="frame", values=face.astype(np.float32),
                                           frame=np.arange(t.size), time_s=t, mask=rng.random(t.size) > 0.1))
        ta = np.arange(0, DURATION_S, 0.1)
        va, aa = labels_of(i, ta)
        audio = np.stack([0.2 * va, aa, aa + 0.1 * rng.normal(size=ta.size)], 1)
        fs.write("pred-audio", FeatureArray(video_id=vid, kind="frame", values=audio.astype(np.float32),
                                            frame=np.arange(ta.size), time_s=ta))


def _open(paths: tuple[Path, Path]) -> tuple[FeatureStore, Any]:
    fs, manifest = FeatureStore(paths[0]), load_manifest(paths[1])
    _write_predictions(fs, [it.video_id for it in manifest])
    return fs, manifest


def test_dcmmoe_trains_predicts_and_records_its_inputs(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    config = get_model_spec("dcmmoe").config_type.from_dict(TINY)
    run = train_va("dcmmoe", fs, manifest, tmp_path / "run", config=config)
    record = run.record
    assert record["input_dims"] == {"face": 3, "audio": 3}
    assert {"pred-face", "pred-audio"} <= set(record["inputs"])
    val = record["results"]["val"]
    # valence is in the face stream, arousal in the audio stream: both must come through the fusion
    assert val["ccc_valence"]["value"] > 0.6
    assert val["ccc_arousal"]["value"] > 0.6
    summary = record["contributions"]
    assert json.loads((tmp_path / "run" / "contributions" / "summary.json").read_text()) == summary
    # the planted signal: arousal lives in the audio stream, valence in the face stream
    share = summary["ablation_share"]
    assert share["arousal"]["audio"] > share["valence"]["audio"]
    assert share["valence"]["face"] > share["arousal"]["face"]
    assert sum(share["valence"].values()) == pytest.approx(1.0)
    assert set(summary["gate"]) == {"face", "audio"}  # DCMMOE's expert gate spread over the streams
    assert sum(summary["gate"].values()) == pytest.approx(1.0, abs=1e-5)
    maps = np.load(tmp_path / "run" / "contributions" / "maps.npz")
    assert maps["ablation/audio"].shape == (int(maps["offsets"][-1]), 2)
    assert sorted(p.name for p in (tmp_path / "run" / "plots" / "contributions").iterdir()) == [
        "vid05.png", "vid06.png"]
    report = predict_to_store(tmp_path / "run", fs, manifest, modality="pred-fused", splits=["test"])
    assert report.columns[:2] == ("valence", "arousal")
    assert len(report.columns) == 2 + 16  # predictions ‖ the 16-d head embedding
    prov = fs.provenance("pred-fused")
    assert set(prov["upstream"]) >= {"pred-face", "pred-audio", "labels/valence"}
    assert read_run(tmp_path / "run").config.input_names() == ("pred-face", "pred-audio")


def test_fill_rule_nearest_frame_or_masked(va_store: tuple[Path, Path]) -> None:
    fs, manifest = _open(va_store)
    ids = [it.video_id for it in manifest if it.split == "val"]
    clock = load_clock(fs, ("valence", "arousal"), ids, manifest=manifest)
    spec = get_model_spec("dcmmoe")
    shares = {}
    for fill in (True, False):
        config = spec.config_type.from_dict({**TINY, "fill_missing": fill})
        task = make_task(config, fs, {"<predict>": clock})
        view = task._view(clock)
        shares[fill] = float(view.valid["audio"].float().mean())
    assert shares[True] == 1.0
    # audio rows every 0.1 s on a 25 fps clock: 10 of 25 frames own a row, the others are masked
    assert shares[False] == pytest.approx(10 / 25, abs=0.02)


def test_cli_trains_dcmmoe_released_preset_shape(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    from affectcache.cli.main import app

    _open(va_store)
    store, manifest = va_store
    fields = {"input_modalities": ["pred-face", "pred-audio"], "hidden": 16, "heads": 2, "layers": 1,
              "window": 100, "hop": 50, "epochs": 2, "bootstrap_resamples": 20}
    sets = [a for k, v in fields.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    result = CliRunner().invoke(app, ["train", "dcmmoe-released", "-s", str(store), "-m", str(manifest),
                                      "-o", str(tmp_path / "rel"), *sets])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rel" / "run.json").read_text())
    assert record["model"] == "dcmmoe-released"
    assert record["config"]["experts"] == ["face>behaviour"]
    assert record["config"]["gate"] == "none"
    assert record["input_dims"] == {"face": 3, "behaviour": 3}


def test_raav_trains_on_windows_with_audio_tokens(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    config = get_model_spec("raav").config_type.from_dict({
        "frame_modalities": ["face"], "frame_input_dims": [], "priors": [1.0], "hidden": 16, "heads": 2,
        "epochs": 12, "lr": 1e-2, "bootstrap_resamples": 50})
    assert config.input_names() == ("pred-face", "pred-audio")
    run = train_va("raav", fs, manifest, tmp_path / "raav", config=config)
    assert run.record["input_dims"] == {"face": 3, "audio": 3}
    # one frame stream: the reliability gate gives it everything
    assert run.record["contributions"]["gate"] == {"face": pytest.approx(1.0)}
    val = run.record["results"]["val"]
    assert val["ccc_valence"]["value"] > 0.9
    # Arousal reaches the model only through the four one-second audio tokens, which every frame of the
    # window sees alike (RAAV's design), so it is coarse; the face stream's arousal column is noise (~0).
    assert val["ccc_arousal"]["value"] > 0.35


def test_chunk_tokens_are_means_of_valid_rows() -> None:
    import torch

    from affectcache.trainers.fusion.tasks import _chunk_tokens

    x = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    valid = torch.tensor([[True, True, False, True, False, False, True, True]])
    tokens, ok = _chunk_tokens(x * valid.unsqueeze(-1), valid, 4)
    assert ok.tolist() == [[True, True, False, True]]
    assert tokens[0, :, 0].tolist() == [0.5, 3.0, 0.0, 6.5]


def test_raav_audio_head_as_gate_stream_and_tokens(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    """The demo layout: the audio modality feeds a gate stream and the window tokens. The two streams share
    one loaded array and one gather, and per-frame audio lifts arousal well above the tokens-only model."""
    import torch

    from affectcache.trainers.fusion.tasks import _chunk_tokens

    fs, manifest = _open(va_store)
    config = get_model_spec("raav").config_type.from_dict({
        "frame_modalities": ["face", "audio-frames"], "frame_input_dims": [], "priors": [0.85, 0.15],
        "input_modalities": ["pred-face", "pred-audio", "pred-audio"], "hidden": 16, "heads": 2,
        "epochs": 12, "lr": 1e-2, "bootstrap_resamples": 50})
    ids = [it.video_id for it in manifest if it.split == "train"]
    task = make_task(config, fs, {"train": load_clock(fs, ("valence", "arousal"), ids, manifest=manifest)})
    assert task.sources == {"face": "face", "audio-frames": "audio-frames", "audio": "audio-frames"}
    assert sorted(task.values) == ["audio-frames", "face"]  # one array per store modality
    batch = next(iter(task.train_batches(1, torch.Generator().manual_seed(0))))["batch"]
    tokens, ok = _chunk_tokens(batch.inputs["audio-frames"], batch.valid["audio-frames"], 4)
    torch.testing.assert_close(batch.inputs["audio"], tokens)
    assert torch.equal(batch.valid["audio"], ok)

    run = train_va("raav", fs, manifest, tmp_path / "raav", config=config)
    assert run.record["input_dims"] == {"face": 3, "audio-frames": 3, "audio": 3}
    val = run.record["results"]["val"]
    assert val["ccc_valence"]["value"] > 0.9
    assert val["ccc_arousal"]["value"] > 0.8
    shares = run.record["contributions"]["ablation_share"]
    assert shares["arousal"]["audio-frames"] > shares["arousal"]["face"]
    assert shares["valence"]["face"] > shares["valence"]["audio-frames"]
