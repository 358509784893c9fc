"""Model, losses and GradNorm together: a few optimiser steps on planted single-task corpora."""

from __future__ import annotations

import numpy as np
import torch

from affectcache.trainers.mcdm.data import ClipCorpus, ClipDataset, ClipVectors
from affectcache.trainers.mcdm.gradnorm import DualGradNorm
from affectcache.trainers.mcdm.labels import TaskLabels
from affectcache.trainers.mcdm.losses import loss_components
from affectcache.trainers.mcdm.model import MCDM, MCDMConfig


def planted_corpus(name: str, n: int, seed: int) -> ClipCorpus:
    """Face vectors whose first dims encode the label of this corpus's single task."""
    rng = np.random.default_rng(seed)
    face = rng.normal(size=(n, 8)).astype(np.float32)
    audio = rng.normal(size=(n, 4)).astype(np.float32)
    labels = TaskLabels.empty(n)
    if name == "mosei":
        cls = rng.integers(0, 7, n)
        labels.emotion[:] = np.eye(7, dtype=np.float32)[cls]
        face[:, :7] += 3 * np.eye(7, dtype=np.float32)[cls]
    elif name == "fiv2":
        labels.personality[:] = rng.random((n, 5)).astype(np.float32)
        face[:, :5] = 4 * (labels.personality - 0.5)
    else:
        labels.ah[:] = rng.integers(0, 2, n)
        face[:, 0] = 3 * (labels.ah - 0.5)
    ids = tuple(f"{name}{i}" for i in range(n))
    vectors = {m: ClipVectors(modality=m, video_ids=ids, values=v, present=np.ones(n, bool))
               for m, v in (("face", face), ("audio", audio))}
    return ClipCorpus(name=name, video_ids=ids, splits=np.full(n, "train"), labels=labels, features=vectors)


def test_steps_reduce_every_supervised_loss() -> None:
    torch.manual_seed(0)
    dataset = ClipDataset([planted_corpus(c, 48, i) for i, c in enumerate(("mosei", "fiv2", "bah"))])
    config = MCDMConfig(modalities=("face", "audio"), input_dims=(8, 4), hidden_dim=32, out_dim=32,
                        num_heads=4, dropout=0.0, graph_dropout=0.0)
    model = MCDM(config)
    gradnorm = DualGradNorm()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    shared = list(model.shared_parameters())
    everything = dataset.batch(torch.arange(len(dataset)))

    def supervised() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            comps = loss_components(model(everything.features), everything.labels)
        model.train()
        return {k: float(v) for k, v in comps.items() if k.endswith("_sup")}

    before = supervised()
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        for batch in dataset.batches(dataset.indices(split="train"), 32, generator=generator):
            comps = loss_components(model(batch.features), batch.labels)
            total = gradnorm.combine(comps, shared)
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
    after = supervised()
    assert set(before) == {"emo_sup", "per_sup", "ah_sup"}
    for key in before:
        assert after[key] < 0.7 * before[key], (key, before[key], after[key])
    assert sum(gradnorm.supervised.weights.values()) > 0
