"""Kookmin trained from cached arrays: clip-face rows + AST windows on the frame clock, prompts, runs."""

from __future__ import annotations

import csv
import json
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from affectcache.extractors.common.pretrained import model_identity
from affectcache.extractors.core.records import FeatureArray
from affectcache.store.errors import StoreError
from affectcache.store.manifest import load_manifest
from affectcache.store.packed import PackedModality
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.data.clock import load_clock
from affectcache.trainers.data.inputs import InputModality, align_window_input
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.models.kookmin import KookminConfig, encode_region_prompts
from affectcache.trainers.va import evaluate_va
from affectcache.trainers.va_tasks import make_task
from tests.fusion.helpers import ccc
from tests.trainers.va_store import DURATION_S, FPS, labels_of, provenance

if TYPE_CHECKING:
    from pathlib import Path

TINY: dict[str, Any] = {"hidden": 16, "heads": 2, "window": 100, "hop": 50, "epochs": 8,
                        "lr": 3e-3, "early_stop_patience": None, "bootstrap_resamples": 20}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny GRUs: several times faster on one thread


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny CLIPs (text and vision towers, tokenizer) whose text towers differ."""
    from transformers import CLIPModel

    from affectcache.extractors.testing.visual_standins import tiny_clip

    root = tmp_path_factory.mktemp("clips")
    first = tiny_clip(root / "clip-a")
    second = root / "clip-b"
    shutil.copytree(first, second)
    model = CLIPModel.from_pretrained(second, local_files_only=True)
    with torch.no_grad():
        model.text_projection.weight.normal_(generator=torch.Generator().manual_seed(7))
    model.save_pretrained(second)
    return first, second


def _clip_provenance(folder: Path) -> dict[str, Any]:
    prov = provenance("clip-face", "frame", {"model": str(folder), "revision": None, "max_side": 320})
    prov["model"] = model_identity(str(folder), None)
    return prov


def _write_streams(fs: FeatureStore, video_ids: list[str], clip: Path) -> None:
    """``clip-face``: 16-d rows at 10 fps (valence + some arousal, 10 % without a face) whose provenance
    names ``clip``; ``ast``: 12-d 4 s windows every 2 s driven by the window's mean arousal."""
    rng = np.random.default_rng(3)
    w_face = rng.normal(size=(2, 16)) * np.array([[1.0], [0.3]])
    w_audio = rng.normal(size=(2, 12)) * np.array([[0.1], [1.0]])
    fs.init_modality("clip-face", _clip_provenance(clip), overwrite=True)
    ast_config = {"model": "tiny-ast", "window_s": 4.0, "hop_s": 2.0}
    fs.init_modality("ast", provenance("ast", "segment", ast_config), overwrite=True)
    for i, vid in enumerate(video_ids):
        t = np.arange(0, DURATION_S, 0.1)
        v, a = labels_of(i, t)
        face = np.stack([v, a], 1) @ w_face + 0.05 * rng.normal(size=(t.size, 16))
        fs.write("clip-face", FeatureArray(video_id=vid, kind="frame", values=face.astype(np.float32),
                                           frame=np.round(t * FPS).astype(np.int64), time_s=t,
                                           mask=rng.random(t.size) > 0.1))
        starts = np.arange(0.0, DURATION_S - 2.0, 2.0)
        ends = np.minimum(starts + 4.0, DURATION_S)
        rows = []
        for s, e in zip(starts, ends, strict=True):
            sv, sa = labels_of(i, np.arange(s, e, 1 / FPS))
            rows.append(np.array([sv.mean(), sa.mean()]) @ w_audio)
        fs.write("ast", FeatureArray(video_id=vid, kind="segment", values=np.asarray(rows, np.float32),
                                     start_s=starts, end_s=ends))


@pytest.fixture
def kookmin_store(va_store: tuple[Path, Path], clips: tuple[Path, Path]) -> tuple[FeatureStore, Any]:
    fs, manifest = FeatureStore(va_store[0]), load_manifest(va_store[1])
    _write_streams(fs, [it.video_id for it in manifest], clips[0])
    return fs, manifest


def _windows(starts: list[float], ends: list[float], mask: list[bool]) -> InputModality:
    n = len(starts)
    packed = PackedModality(modality="ast", kind="segment", video_ids=("v",), offsets=np.array([0, n]),
                            values=np.arange(n, dtype=np.float32)[:, None], mask=np.asarray(mask),
                            row_arrays={"start_s": np.asarray(starts, float),
                                        "end_s": np.asarray(ends, float)})
    return InputModality(packed=packed, columns=None)


def _clock(times: list[float]) -> Any:
    from affectcache.trainers.data.clock import FrameClock

    n = len(times)
    return FrameClock(video_ids=("v",), offsets=np.array([0, n]), frame=np.arange(n),
                      time_s=np.asarray(times, float), fps=np.array([1.0]), labels=("valence", "arousal"),
                      targets=np.zeros((n, 2), np.float32), target_mask=np.ones(n, bool),
                      labelled=np.array([True]))


def test_ast_windows_expand_to_the_frames_they_cover() -> None:
    # windows [0,4) [2,6) [4,8) (invalid) [10,14); frames every second
    source = _windows([0, 2, 4, 10], [4, 6, 8, 14], [True, True, False, True])
    clock = _clock([0.0, 1.0, 2.5, 3.5, 5.0, 6.5, 7.5, 9.0, 12.0, 15.0])
    got = align_window_input(source, clock, max_fill_s=None)
    # overlapping windows: the one whose centre (2, 4) is nearest; [4,8) is invalid: 5.0 takes [2,6)
    assert got.index.tolist() == [0, 0, 0, 1, 1, 1, 1, 3, 3, 3]
    assert got.filled.tolist() == [False] * 5 + [True, True, True, False, True]
    assert got.valid.all()
    limited = align_window_input(source, clock, max_fill_s=1.0)
    # filled frames count within 1 s of a valid window's span: 6.5 (0.5 s), 9.0 and 15.0 (1 s); 7.5 is 1.5 s
    assert limited.valid.tolist() == [True] * 6 + [False, True, True, True]


def test_task_puts_both_streams_on_the_clock_with_masks(kookmin_store: tuple[FeatureStore, Any]) -> None:
    fs, manifest = kookmin_store
    ids = [it.video_id for it in manifest if it.split == "val"]
    clock = load_clock(fs, ("valence", "arousal"), ids, manifest=manifest)
    for fill in (True, False):
        config = KookminConfig.from_dict({**TINY, "fill_missing": fill})
        task = make_task(config, fs, {"val": clock})
        view = task._view(clock)
        visual, audio = view.valid["visual"].numpy(), view.valid["audio"].numpy()
        packed = fs.load("ast", ids)
        # every label frame of the 16 s videos lies inside an AST window: all audio frames are real
        assert audio.all()
        rows = view.index["audio"].numpy()
        times = clock.time_s
        assert (packed.row_arrays["start_s"][rows] <= times).all()
        assert (times < packed.row_arrays["end_s"][rows]).all()
        # clip-face rows are at 10 fps (every 2.5th frame) and 10 % lack a face
        if fill:
            assert visual.all()
        else:
            assert 0.25 < visual.mean() < 0.45
        batch = task._batch(view, *view.windows.gather_rows(np.arange(2)))
        assert batch.inputs["visual"].shape[-1] == 16
        assert batch.inputs["audio"].shape[-1] == 12
        # masked frames are zeros
        assert (batch.inputs["visual"][~batch.valid["visual"]] == 0).all()


def test_prompts_come_from_the_image_modalitys_own_clip(kookmin_store: tuple[FeatureStore, Any],
                                                         clips: tuple[Path, Path]) -> None:
    fs, manifest = kookmin_store
    clock = load_clock(fs, ("valence", "arousal"), [it.video_id for it in manifest], manifest=manifest)
    config = KookminConfig.from_dict(TINY)
    spec = get_model_spec("kookmin")
    banks = []
    for clip in clips:
        fs.init_modality("clip-face", _clip_provenance(clip), overwrite=True)
        _write_streams(fs, [it.video_id for it in manifest], clip)
        task = make_task(config, fs, {"val": clock})
        model = spec.build(config, task.input_dims)
        record = task.init_model(model)
        assert record["prompts"]["encoder"]["model"] == str(clip)
        encoded = encode_region_prompts(model.config, _clip_provenance(clip))
        expected = torch.nn.functional.normalize(encoded, dim=-1)
        assert torch.allclose(model.prompt_embeddings, expected, atol=1e-6)
        banks.append(model.prompt_embeddings.clone())
    assert not torch.allclose(banks[0], banks[1], atol=1e-3)


def test_a_missing_text_tower_is_refused_clearly(kookmin_store: tuple[FeatureStore, Any],
                                                 clips: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = kookmin_store
    gone = tmp_path / "clip-gone"
    shutil.copytree(clips[0], gone)
    _write_streams(fs, [it.video_id for it in manifest], gone)
    shutil.rmtree(gone)  # the image modality's provenance now names a folder that is not there
    config = KookminConfig.from_dict(TINY)
    clock = load_clock(fs, ("valence", "arousal"), [it.video_id for it in manifest], manifest=manifest)
    task = make_task(config, fs, {"val": clock})
    model = get_model_spec("kookmin").build(config, task.input_dims)
    with pytest.raises(StoreError, match="cannot encode the region prompts with the text tower of clip-face"):
        task.init_model(model)


def test_kookmin_trains_lowers_its_loss_predicts_and_evaluates(kookmin_store: tuple[FeatureStore, Any],
                                                              va_store: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    from affectcache.cli.main import app

    fs, manifest = kookmin_store
    store_path, manifest_path = va_store
    common = ["-s", str(store_path), "-m", str(manifest_path)]
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    result = CliRunner().invoke(app, ["train", "kookmin", *common, "-o", str(tmp_path / "run"), *sets])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["input_dims"] == {"visual": 16, "audio": 12}
    assert {"clip-face", "ast", "labels/valence", "labels/arousal"} <= set(record["inputs"])
    assert record["prompts"]["encoder"]["image_modality"] == "clip-face"
    assert len(record["prompts"]["texts"]) == 9
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        losses = [float(row["train_loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == TINY["epochs"]
    assert losses[-1] < 0.7 * losses[0]
    val = record["results"]["val"]
    assert val["ccc_valence"]["value"] > 0.3
    assert val["ccc_arousal"]["value"] > 0.3
    assert set(record["contributions"]["gate"]) == {"visual", "audio"}
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), *common, "--modality", "pred-kookmin",
                                      "--split", "test"])
    assert result.exit_code == 0, result.output
    test_ids = [it.video_id for it in manifest if it.split == "test"]
    written = FeatureStore(store_path).load("pred-kookmin", test_ids)
    assert written.entry_attrs[0]["columns"][:2] == ["valence", "arousal"]
    assert written.values.shape == (int(DURATION_S * FPS), 2 + 16)
    assert np.abs(written.values[:, :2]).max() <= 1.0
    scores = evaluate_va(tmp_path / "run", fs, manifest, split="test")
    saved = json.loads((tmp_path / "run" / "eval-test.json").read_text())
    assert saved["va_score"] == scores["va_score"]
    assert np.isfinite(scores["va_score"])
    # the test video's predictions in the store score what evaluate scored
    clock = load_clock(fs, ("valence", "arousal"), test_ids, manifest=manifest)
    stored_ccc = ccc(written.values[:, 0][clock.target_mask], clock.targets[clock.target_mask, 0])
    assert stored_ccc == pytest.approx(scores["ccc_valence"]["value"], abs=1e-3)


def test_demo_step_trains_kookmin_on_clip_face_and_ast(kookmin_store: tuple[FeatureStore, Any],
                                                      tmp_path: Path) -> None:
    from affectcache.trainers.fusion.kookmin_demo import train_demo_kookmin

    fs, manifest = kookmin_store
    threads = torch.get_num_threads()
    head = train_demo_kookmin(fs, manifest, tmp_path, overrides={"epochs": 2, "bootstrap_resamples": 20})
    assert torch.get_num_threads() == threads
    assert head.input_modality == "clip-face + ast"
    assert head.held_out["split"] == "test"
    assert np.isfinite(head.held_out["va_score"])
    assert fs.videos("pred-kookmin") == manifest.ids()
    assert head.summary().startswith("on clip-face + ast: held-out (test) CCC valence")


def test_face_policy_all_reads_one_slot_and_masks_rows_without_it(
        kookmin_store: tuple[FeatureStore, Any], clips: tuple[Path, Path]) -> None:
    fs, manifest = kookmin_store
    ids = [it.video_id for it in manifest]
    fs.init_modality("clip-face", _clip_provenance(clips[0]), overwrite=True)
    rng = np.random.default_rng(5)
    for vid in ids:
        t = np.arange(int(DURATION_S * FPS)) / FPS
        values = rng.normal(size=(t.size, 2, 16)).astype(np.float32)
        values[::2, 1] = 0.0  # the second track is absent on every other frame
        fs.write("clip-face", FeatureArray(video_id=vid, kind="frame", values=values,
                                           frame=np.arange(t.size), time_s=t))
    clock = load_clock(fs, ("valence", "arousal"), ids[5:7], manifest=manifest)
    for slot, share in ((0, 1.0), (1, 0.5)):
        config = KookminConfig.from_dict({**TINY, "face_slot": slot, "fill_missing": False})
        task = make_task(config, fs, {"val": clock})
        assert task.input_dims == {"visual": 16, "audio": 12}
        view = task._view(clock)
        assert view.valid["visual"].float().mean().item() == pytest.approx(share, abs=0.01)
        rows, pad = view.windows.gather_rows(np.arange(1))
        batch = task._batch(view, rows, pad)
        stored = fs.load("clip-face", ids[5:6]).values
        expected = torch.from_numpy(stored[rows[0], slot]) * batch.valid["visual"][0, :, None]
        assert torch.equal(batch.inputs["visual"][0], expected)
    with pytest.raises(StoreError, match="holds 2 face slots per row; set face_slot below 2"):
        make_task(KookminConfig.from_dict({**TINY, "face_slot": 2}), fs, {"val": clock})
