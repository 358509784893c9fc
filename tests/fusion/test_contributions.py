"""Contribution maps: ablation finds which modality carries which dimension; gate weights per frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectcache.trainers.fusion.contributions import (
    ablation_contributions,
    gate_contributions,
    merge_single_sequence,
    summarise_gates,
)
from affectcache.trainers.models.dcmmoe import DCMMOEConfig, DCMMOEModel
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput
from affectcache.trainers.models.raav import RAAVConfig, RAAVModel
from tests.fusion.helpers import ccc, make_batch


class PlantedModel(torch.nn.Module):
    """Valence read from the face, arousal from the audio; behaviour only adds a little noise."""

    modalities = ("face", "behaviour", "audio")

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.drop = torch.nn.Dropout(0.9)  # would scramble everything if ablation ran in train mode

    def forward(self, batch: FusionBatch) -> FusionOutput:
        face = batch.inputs["face"][..., 0] * batch.valid["face"]
        audio = batch.inputs["audio"][..., 0] * batch.valid["audio"]
        noise = 0.05 * batch.inputs["behaviour"][..., 0] * batch.valid["behaviour"]
        preds = self.drop(torch.stack([face + noise, audio + noise], dim=-1) * self.scale)
        return FusionOutput(preds=preds, embedding=preds)


def _videos(n: int = 3) -> tuple[dict[str, FusionBatch], dict[str, np.ndarray]]:
    videos, targets = {}, {}
    for i in range(n):
        frames = 40 + 10 * i
        b = make_batch({"face": 3, "behaviour": 2, "audio": 4}, {}, batch=1, frames=frames, seed=i,
                       frame_lengths=[frames - 5])
        videos[f"v{i}"] = b
        keep = b.mask[0]
        planted = [b.inputs["face"][0, keep, 0], b.inputs["audio"][0, keep, 0]]
        targets[f"v{i}"] = torch.stack(planted, -1).numpy()
    return videos, targets


def test_ablation_credits_each_dimension_to_its_modality() -> None:
    model = PlantedModel().train()
    videos, targets = _videos()
    result = ablation_contributions(model, videos, targets, score=ccc)
    assert model.training                                           # mode restored
    for v in result.videos.values():
        assert v.ccc_full[0] > 0.99
        assert v.ccc_full[1] > 0.99
        assert v.delta("face")[0] > 0.95
        assert abs(v.delta("face")[1]) < 0.01
        assert v.delta("audio")[1] > 0.95
        assert abs(v.delta("audio")[0]) < 0.01
        assert v.frame_effect["face"].shape == (v.frame_effect["face"].shape[0], 2)
        assert np.all(v.frame_effect["face"][:, 1] < 0.2)        # arousal barely moves without the face
    summary = result.summary()
    assert summary["face"]["valence_share"] > 0.95
    assert summary["audio"]["arousal_share"] > 0.95
    assert summary["audio"]["valence_share"] < 0.05
    assert len(result.rows()) == 3 * 3


def test_ablation_respects_the_valid_frames() -> None:
    model = PlantedModel()
    videos, targets = _videos(1)
    targets["v0"] = targets["v0"].copy()
    targets["v0"][:10] = 9.0                                        # wrong labels, masked below
    valid = {"v0": np.arange(len(targets["v0"])) >= 10}
    result = ablation_contributions(model, videos, targets, score=ccc, valid=valid, modalities=["face"])
    assert result.videos["v0"].ccc_full[0] > 0.99
    assert result.modalities == ("face",)


def test_ablation_errors_name_the_problem() -> None:
    videos, targets = _videos(1)
    with pytest.raises(ValueError, match=r"cannot ablate \['voice'\]"):
        ablation_contributions(PlantedModel(), videos, targets, score=ccc, modalities=["voice"])
    with pytest.raises(ValueError, match="no targets for video 'v0'"):
        ablation_contributions(PlantedModel(), videos, {}, score=ccc)
    with pytest.raises(ValueError, match="v0: merged predictions"):
        ablation_contributions(PlantedModel(), videos, {"v0": targets["v0"][:-1]}, score=ccc)


def test_gate_weights_of_raav_per_frame() -> None:
    torch.manual_seed(0)
    model = RAAVModel(RAAVConfig(hidden=16, heads=2, frame_input_dims=(3, 2), audio_input_dim=4))
    videos = {}
    for i, frames in enumerate((12, 20)):
        b = make_batch({"face": 3, "behaviour": 2, "audio": 4}, {"audio": 4}, batch=1, frames=frames, seed=i,
                       frame_lengths=[frames - 2])
        b.valid["behaviour"][0, :4] = False
        videos[f"v{i}"] = b
    gates = gate_contributions(model, videos)
    assert set(gates) == {"v0", "v1"}
    assert set(gates["v1"]) == {"face", "behaviour"}
    assert gates["v1"]["face"].shape == (18,)
    assert np.allclose(gates["v1"]["face"] + gates["v1"]["behaviour"], 1)
    assert np.all(gates["v0"]["face"][:4] == 1)
    summary = summarise_gates(gates)
    assert set(summary) == {"face", "behaviour"}
    assert 0 < summary["behaviour"] < summary["face"] < 1           # the 0.85 / 0.15 priors dominate at init


def test_models_without_a_gate_give_no_gate_weights() -> None:
    cfg = DCMMOEConfig(modalities=("face", "behaviour"), input_dims=(3, 2), experts=("face>behaviour",),
                       gate="none", hidden=8, heads=2, layers=1)
    b = make_batch({"face": 3, "behaviour": 2}, {}, batch=1, frames=6)
    assert gate_contributions(DCMMOEModel(cfg), {"v": b}) == {"v": {}}


def test_single_sequence_merge_refuses_windows() -> None:
    b = make_batch({"face": 3}, {}, batch=2, frames=4)
    with pytest.raises(ValueError, match="one sequence per video, got 2 windows"):
        merge_single_sequence(b, torch.zeros(2, 4, 2))
