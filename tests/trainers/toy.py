"""A toy regression task for the training-loop tests (importable by a subprocess that gets killed)."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from affectcache.trainers.loop import EpochRecord, FitResult, LoopConfig, fit, seed_everything

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class ToyTask:
    """y = x·w + noise; batches shuffled by the loop's generator; score = −MSE on a fixed validation set."""

    score_key = "neg_mse"

    def __init__(self, batch_size: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(8, 1, generator=g)
        self.x = torch.randn(256, 8, generator=g)
        self.y = self.x @ self.w + 0.1 * torch.randn(256, 1, generator=g)
        self.vx = torch.randn(64, 8, generator=g)
        self.vy = self.vx @ self.w
        self.batch_size = batch_size

    def train_batches(self, epoch: int, generator: torch.Generator,
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.x.shape[0], generator=generator)
        for i in range(0, order.numel(), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"neg_mse": -float(nn.functional.mse_loss(model(self.vx), self.vy))}


def toy_model(seed: int) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.GELU(), nn.Linear(16, 1))


def toy_config(**changes: Any) -> LoopConfig:
    return LoopConfig(**{"epochs": 6, "lr": 1e-2, "seed": 3, "early_stop_patience": None, **changes})


def run(run_dir: Path | str, *, kill_after: int | None = None, **changes: Any) -> FitResult:
    config = toy_config(**changes)

    def killer(record: EpochRecord) -> None:
        if kill_after is not None and record.epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return fit(toy_model(config.seed), ToyTask(), config, run_dir, callbacks=[killer])


if __name__ == "__main__":
    run(sys.argv[1], kill_after=int(sys.argv[2]), ema_decay=0.9, grad_clip=1.0)
