"""A small, reproducible PyTorch training loop shared by every trainer.

:func:`fit` trains a model on a :class:`Task` (what batches are, the loss, the validation metrics) with:

* AdamW (or Adam with L2 weight decay, ``optimizer: adam``) over parameter groups (a model may define
  ``parameter_groups() -> [{"params", "lr_scale", "weight_decay"?}]``; otherwise one group),
  ReduceLROnPlateau on the validation score (mode max), early stopping after ``early_stop_patience``
  epochs without improvement, gradient-norm clipping, an optional EMA of the weights used for evaluation
  and the best checkpoint, bf16 autocast on CUDA;
* a task may keep training state of its own (e.g. adaptive loss weights): when it has ``state_dict()`` /
  ``load_state_dict(state)`` that state is saved in ``last.pt`` and restored on resume;
* reproducibility: ``seed`` seeds torch, each epoch's batch order comes from a generator seeded with
  ``seed + epoch``, and ``torch.use_deterministic_algorithms`` is on while training (same seed → identical
  metrics on CPU);
* a run folder: ``last.pt`` after every epoch and ``best.pt`` when the score improves, both written
  atomically and loadable with ``torch.load(weights_only=True)`` (RNG states are tensors, the history is
  plain data); ``metrics.csv`` / ``metrics.jsonl`` one row per epoch. Calling :func:`fit` again on the same
  folder resumes from ``last.pt`` (a run killed with ``kill -9`` ends where an uninterrupted one does).

Progress: a bar on a terminal (``progress=True``), one log line per epoch otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from affectcache.extractors.core.atomic import atomic_path, atomic_write_text
from affectcache.trainers.config import TrainerConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    import torch

logger = logging.getLogger(__name__)

__all__ = ["EMA", "EpochRecord", "FitResult", "LoopConfig", "Task", "fit", "load_checkpoint",
           "seed_everything"]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CHECKPOINT_FORMAT = "affectcache-checkpoint/1"


@dataclass(frozen=True, kw_only=True)
class LoopConfig(TrainerConfig):
    """Optimisation settings shared by the trainers (subclassed by each model's config)."""

    epochs: int = 100
    """Maximum number of epochs."""

    batch_size: int = 8
    """Examples (windows, sequences) per optimiser step."""

    lr: float = 1e-4
    """AdamW learning rate (scaled per parameter group by its ``lr_scale``)."""

    weight_decay: float = 0.01
    """Weight decay (decoupled for AdamW, L2 added to the gradient for Adam)."""

    optimizer: Literal["adamw", "adam"] = "adamw"
    """``adamw`` (decoupled weight decay) or ``adam`` (``torch.optim.Adam``, as some authors train)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    plateau_factor: float = 0.1
    """ReduceLROnPlateau: multiply the learning rate by this when the validation score stalls."""

    plateau_patience: int = 5
    """ReduceLROnPlateau: epochs without improvement before reducing."""

    plateau_threshold: float = 1e-4
    """ReduceLROnPlateau: relative improvement that counts."""

    min_lr: float = 0.0
    """ReduceLROnPlateau: lower bound of the learning rate."""

    early_stop_patience: int | None = 15
    """Stop after this many epochs without a better validation score (None: never)."""

    grad_clip: float | None = None
    """Clip the global gradient norm to this (None: no clipping)."""

    ema_decay: float | None = None
    """Keep an exponential moving average of the weights with this decay and evaluate/save it (None: off)."""

    amp: Literal["off", "bf16"] = "off"
    """``bf16``: autocast to bfloat16 on CUDA (ignored on CPU)."""

    seed: int = 42
    """Seed of weights initialisation, dropout and batch order."""

    deterministic: bool = True
    """``torch.use_deterministic_algorithms(True)`` while training."""

    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1``)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.epochs < 1 or self.batch_size < 1:
            problems.append(f"need epochs >= 1 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            problems.append("need lr > 0 and weight_decay >= 0")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0:
            problems.append("need 0 < plateau_factor < 1 and plateau_patience >= 0")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            problems.append("early_stop_patience must be >= 1 or null")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append("grad_clip must be > 0 or null")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            problems.append("ema_decay must lie in (0, 1) or be null")
        return problems


class Task(Protocol):
    """What :func:`fit` needs from a trainer: batches, a loss, validation metrics."""

    score_key: str
    """Key of :meth:`evaluate`'s result to maximise (model selection, plateau, early stopping)."""

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]:
        """The epoch's batches, shuffled with ``generator`` (on the model's device)."""
        ...

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss of one batch."""
        ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics (the model is in eval mode, gradients are off)."""
        ...


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One finished epoch."""

    epoch: int
    """Epoch number, from 1."""
    train_loss: float
    """Mean training loss over the epoch's batches."""
    metrics: dict[str, float]
    """Validation metrics."""
    lr: float
    """Learning rate of the first group during the epoch."""
    improved: bool
    """Whether the score beat every earlier epoch (``best.pt`` was written)."""
    seconds: float
    """Wall time of the epoch."""

    def row(self) -> dict[str, Any]:
        """Flat row for metrics.csv / metrics.jsonl."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "lr": self.lr, "improved": self.improved,
                "seconds": round(self.seconds, 3), **self.metrics}


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """How a fit ended."""

    best_epoch: int
    """Epoch of ``best.pt`` (0 if no epoch produced a finite score)."""
    best_score: float
    """Its validation score."""
    epochs_run: int
    """Epochs finished in total (including those of earlier, resumed attempts)."""
    stopped_early: bool
    """Whether early stopping ended the run."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every epoch's row."""


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def update(self, model: torch.nn.Module) -> None:
        import torch

        with torch.no_grad():
            for k, v in model.state_dict().items():
                if k in self.shadow:
                    self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The model carries the averaged weights inside the block, its own ones again after it."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(backup, strict=False)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled)`` inside the block, the previous setting after it."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _parameter_groups(model: torch.nn.Module, config: LoopConfig) -> list[dict[str, Any]]:
    make = getattr(model, "parameter_groups", None)
    raw: list[dict[str, Any]] = (make() if callable(make)
                                 else [{"params": [p for p in model.parameters() if p.requires_grad]}])
    groups = []
    for group in raw:
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": config.lr * float(group.get("lr_scale", 1.0)),
                           "weight_decay": float(group.get("weight_decay", config.weight_decay))})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`fit` (``weights_only=True``: tensors and plain data only)."""
    import torch

    payload: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an affectcache checkpoint (format {payload.get('format')!r})")
    return payload


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(payload: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, renamed into place (a killed run never leaves
    a torn checkpoint)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _write_metrics(run_dir: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite metrics.csv/jsonl from the history (so a resumed run never duplicates or loses rows)."""
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(dict(r)) + "\n" for r in history))
    columns = list(dict.fromkeys(k for r in history for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


def _finite(score: Any) -> float:
    value = float(score)
    return value if math.isfinite(value) else -math.inf


def fit(model: torch.nn.Module, task: Task, config: LoopConfig, run_dir: str | Path, *,
        resume: bool = True, progress: bool = False, extra_state: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callable[[EpochRecord], None]] = ()) -> FitResult:
    """Train ``model`` on ``task`` into ``run_dir`` (see the module docstring).

    Args:
        model: The model, already on ``config.device`` and initialised (seed it before building).
        task: Batches, loss and validation metrics.
        config: Optimisation settings.
        run_dir: Folder of checkpoints and metrics files.
        resume: Continue from ``run_dir/last.pt`` when it exists (else start over).
        progress: Show a progress bar (use on a terminal).
        extra_state: Plain data saved in every checkpoint (e.g. the model config, input widths).
        callbacks: Called after each epoch's checkpoint is written.

    Returns:
        The best epoch and score, and the history.
    """
    import torch

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    optimizer_type = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    optimizer = optimizer_type(_parameter_groups(model, config), lr=config.lr, betas=config.betas,
                               weight_decay=config.weight_decay)
    task_state = getattr(task, "state_dict", None)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience,
        threshold=config.plateau_threshold, min_lr=config.min_lr)
    ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_epoch, bad_epochs = 1, -math.inf, 0, 0
    last_path = run / LAST_CHECKPOINT
    if resume and last_path.exists():
        # Loaded on the CPU: RNG states must stay CPU byte tensors; load_state_dict copies weights and
        # optimizer state onto the parameters' device.
        state = load_checkpoint(last_path, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
        _set_rng_state(state["rng"])
        if state.get("task") is not None:
            task.load_state_dict(state["task"])  # type: ignore[attr-defined]
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        best_score, best_epoch, bad_epochs = float(state["best_score"]), int(state["best_epoch"]), int(
            state["bad_epochs"])
        if state.get("stopped_early"):
            return FitResult(best_epoch=best_epoch, best_score=best_score, epochs_run=start_epoch - 1,
                             stopped_early=True, history=history)
        logger.info("resuming %s after epoch %d (best %.4f at epoch %d)", run, start_epoch - 1, best_score,
                    best_epoch)
    autocast = config.amp == "bf16" and device.type == "cuda"
    stopped_early = False
    with deterministic_mode(config.deterministic):
        for epoch in range(start_epoch, config.epochs + 1):
            started = time.perf_counter()
            model.train()
            generator = torch.Generator().manual_seed(config.seed + epoch)
            losses: list[float] = []
            lr = float(optimizer.param_groups[0]["lr"])
            for batch in _maybe_progress(task.train_batches(epoch, generator), progress, f"epoch {epoch}"):
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = task.loss(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"epoch {epoch}: the training loss is {float(loss)}; lower "
                                             "lr or check the inputs for extreme values")
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                losses.append(float(loss.detach()))
            model.eval()
            with torch.no_grad(), (ema.applied(model) if ema is not None else contextlib.nullcontext()):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                    metrics = {k: float(v) for k, v in task.evaluate(model).items()}
                eval_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if task.score_key not in metrics:
                raise KeyError(f"the task's metrics lack its score {task.score_key!r}: {sorted(metrics)}")
            score = _finite(metrics[task.score_key])
            scheduler.step(score)
            improved = score > best_score
            if improved:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                atomic_torch_save({"format": CHECKPOINT_FORMAT, "model": eval_state, "epoch": epoch,
                                   "score": score, "metrics": metrics, "extra": dict(extra_state or {})},
                                  run / BEST_CHECKPOINT)
            else:
                bad_epochs += 1
            record = EpochRecord(epoch=epoch, train_loss=float(sum(losses) / max(len(losses), 1)),
                                 metrics=metrics, lr=lr, improved=improved,
                                 seconds=time.perf_counter() - started)
            history.append(record.row())
            stopped_early = (config.early_stop_patience is not None
                             and bad_epochs >= config.early_stop_patience)
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ema": ema.shadow if ema is not None else None,
                "rng": _rng_state(), "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "history": history, "stopped_early": stopped_early,
                "task": task_state() if callable(task_state) else None,
                "extra": dict(extra_state or {})}, last_path)
            _write_metrics(run, history)
            logger.info("epoch %d: loss %.4f, %s %.4f%s (%.1fs)", epoch, record.train_loss, task.score_key,
                        metrics[task.score_key], " *" if improved else "", record.seconds)
            for callback in callbacks:
                callback(record)
            if stopped_early:
                logger.info("early stop: no better %s for %d epochs", task.score_key, bad_epochs)
                break
    return FitResult(best_epoch=best_epoch, best_score=best_score, epochs_run=len(history),
                     stopped_early=stopped_early, history=history)


def _maybe_progress(batches: Iterable[Any], enabled: bool, label: str) -> Iterable[Any]:
    if not enabled:
        return batches
    from rich.progress import track

    return track(batches, description=label, transient=True)
