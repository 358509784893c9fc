"""The trainers on CUDA: bf16 autocast, checkpoints that load on CPU, resume, predictions (opt-in:
``--integration`` on a machine with a GPU; the same runs on CPU are the unit tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.loop import load_checkpoint
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.predict import predict_to_store
from affectcache.trainers.va import train_va
from tests.fusion.test_fusion_train import _write_predictions
from tests.trainers.test_va import FACE

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _open(paths: tuple[Path, Path]) -> tuple[FeatureStore, Any]:
    return FeatureStore(paths[0]), load_manifest(paths[1])


def test_ras_face_on_cuda_bf16_learns_resumes_and_predicts(va_store: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    spec = get_model_spec("ras-face")
    gpu_config = spec.config_type(**{**FACE, "device": "cuda", "amp": "bf16"})
    run = train_va("ras-face", fs, manifest, tmp_path / "gpu", config=gpu_config)
    assert run.record["status"] == "done"
    gpu_score = run.record["results"]["val"]["va_score"]
    assert gpu_score > 0.5  # the planted signal, as on CPU
    state = load_checkpoint(tmp_path / "gpu" / "best.pt")  # saved on the GPU, loads on a CPU-only host
    tensors = [t for t in state["model"].values() if isinstance(t, torch.Tensor)]
    assert tensors
    assert all(t.device.type == "cpu" for t in tensors)
    again = train_va("ras-face", fs, manifest, tmp_path / "gpu", config=gpu_config)
    assert again.record["fit"] == run.record["fit"]  # resumed: nothing left to train

    cpu = train_va("ras-face", fs, manifest, tmp_path / "cpu", config=spec.config_type(**FACE))
    assert abs(cpu.record["results"]["val"]["va_score"] - gpu_score) < 0.2  # bf16 vs fp32, same recipe

    report = predict_to_store(tmp_path / "gpu", fs, manifest, modality="pred-gpu")
    values = fs.read("pred-gpu", report.videos[0]).values
    assert np.isfinite(values).all()
    assert np.abs(values[:, :2]).max() <= 1.0


def test_raav_on_cuda_bf16(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    fs, manifest = _open(va_store)
    _write_predictions(fs, [it.video_id for it in manifest])
    config = get_model_spec("raav").config_type.from_dict({
        "frame_modalities": ["face"], "frame_input_dims": [], "priors": [1.0], "hidden": 16, "heads": 2,
        "epochs": 12, "lr": 1e-2, "bootstrap_resamples": 50, "device": "cuda", "amp": "bf16"})
    run = train_va("raav", fs, manifest, tmp_path / "raav", config=config)
    assert run.record["results"]["val"]["ccc_valence"]["value"] > 0.9
