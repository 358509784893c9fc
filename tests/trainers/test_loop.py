"""The training loop: determinism, checkpoints, resume after kill -9, early stopping, EMA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from affectcache.trainers.loop import LoopConfig, fit, load_checkpoint
from tests.trainers.toy import ToyTask, run, toy_config, toy_model

REPO = Path(__file__).resolve().parents[2]


def _scores(history: list[dict]) -> list[tuple[float, float]]:
    return [(row["train_loss"], row["neg_mse"]) for row in history]


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path: Path) -> None:
    a = run(tmp_path / "a")
    b = run(tmp_path / "b")
    c = run(tmp_path / "c", seed=4)
    assert _scores(a.history) == _scores(b.history)
    assert _scores(a.history) != _scores(c.history)
    assert a.history[-1]["neg_mse"] > a.history[0]["neg_mse"]  # it learns


def test_checkpoints_load_with_weights_only_and_metrics_files(tmp_path: Path) -> None:
    result = run(tmp_path)
    best = load_checkpoint(tmp_path / "best.pt")
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
    assert best["score"] == pytest.approx(max(r["neg_mse"] for r in result.history))
    assert last["epoch"] == 6
    assert isinstance(last["rng"]["torch"], torch.Tensor)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,lr,improved")


def test_resume_after_kill_9_ends_where_an_uninterrupted_run_does(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-m", "tests.trainers.toy", str(killed), "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(killed / "last.pt")["epoch"] == 3
    resumed = run(killed, ema_decay=0.9, grad_clip=1.0)
    straight = run(tmp_path / "straight", ema_decay=0.9, grad_clip=1.0)
    assert [r["epoch"] for r in resumed.history] == list(range(1, 7))
    assert _scores(resumed.history) == _scores(straight.history)
    final_a = load_checkpoint(killed / "last.pt")["model"]
    final_b = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


class _FlatScore(ToyTask):
    """The validation score never changes: only epoch 1 improves."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"neg_mse": 0.5}  # positive: the relative plateau threshold reads it as flat


def test_early_stopping_and_plateau(tmp_path: Path) -> None:
    config = toy_config(epochs=20, early_stop_patience=2, plateau_patience=0)
    result = fit(toy_model(0), _FlatScore(), config, tmp_path)
    assert result.stopped_early
    assert result.epochs_run == 3
    assert result.best_epoch == 1
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([1e-2, 1e-2, 1e-3])  # reduced after the first non-improving epoch
    again = fit(toy_model(0), _FlatScore(), config, tmp_path)
    assert again.epochs_run == 3  # a finished (early-stopped) run is not continued


def test_ema_weights_are_what_is_evaluated_and_saved(tmp_path: Path) -> None:
    with_ema = run(tmp_path / "ema", ema_decay=0.5)
    without = run(tmp_path / "plain")
    assert _scores(with_ema.history) != _scores(without.history)
    best = load_checkpoint(tmp_path / "ema" / "best.pt")["model"]
    last = load_checkpoint(tmp_path / "ema" / "last.pt")
    if with_ema.best_epoch == 6:
        # best.pt holds the averaged weights, last.pt the raw ones plus the average.
        assert any(not torch.equal(best[k], last["model"][k]) for k in best)
        assert all(torch.equal(best[k], last["ema"][k]) for k in best)


def test_config_is_validated() -> None:
    from affectcache.extractors.core.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay"):
        LoopConfig.from_dict({"ema_decay": 1.5})
    with pytest.raises(ConfigError, match="unknown keys"):
        LoopConfig.from_dict({"learning_rate": 1.0})
