"""The three VA training tasks (one per example view), as the loop's :class:`~affectcache.trainers.loop.Task`.

A task loads its input modality once (``FeatureStore.load``), keeps the values as stored (float16 stays
float16) in one tensor on the training device, and builds each split's view as index arrays on that split's
frame clock. Batches are gathered by indexing; values become float32 only inside the batch.

* ``frame-windows`` (``ras-face``): inputs on the clock by nearest-valid index; loss = per-window masked CCC
  (population moments, ``ccc_eps``), mean over windows and labels of ``w·(1 − CCC)``; the training mask
  drops frames whose input was filled from another frame unless ``train_on_filled``.
* ``segments`` (``ras-behaviour``): runs of segments; loss = mean over labels of (1 − CCC) over the batch's
  valid segments (sample moments, RAS's ρ·σ form); frame outputs by interval expansion.
* ``audio-windows`` (``ras-audio``): 4 s windows of audio rows with 4 one-second target bins; loss =
  Σ w·(1 − CCC) + ``mse_weight``·MSE over the batch's valid bins (MSE alone below 4); frame outputs by
  linear interpolation of the 4 bins over the window's frames, overlap mean.

Every task predicts frame outputs (and embeddings) for any clock with :meth:`VATask.predict`; frames no
example reaches take the nearest predicted frame of their video.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch

from affectcache.trainers import metrics
from affectcache.trainers.data.clock import FrameClock
from affectcache.trainers.data.inputs import InputModality, align_frame_input, load_input
from affectcache.trainers.data.views import (
    AudioWindows,
    Segments,
    Windows,
    audio_windows,
    expand_segments,
    fill_nearest,
    frame_windows,
    interpolate_windows,
    overlap_mean_rows,
    segment_targets,
    segment_windows,
    sort_segments,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.data.config import VAConfig
    from affectcache.trainers.models.ras_audio import RasAudioConfig
    from affectcache.trainers.models.ras_behaviour import RasBehaviourConfig
    from affectcache.trainers.models.ras_face import RasFaceConfig

logger = logging.getLogger(__name__)

SCORE_KEY = "va_score"
EVAL_BATCH_FACTOR = 4
"""Evaluation batches are this many times the training batch (no gradients are kept)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class FramePredictions:
    """Outputs of a model on every frame of a clock."""

    clock: FrameClock
    """The frames (and their targets)."""
    preds: npt.NDArray[np.float64]
    """(n, n_labels) predictions."""
    covered: npt.NDArray[np.bool_]
    """(n,) whether an example reached the frame (the others took the nearest predicted frame)."""
    embeddings: npt.NDArray[np.float32] | None = None
    """(n, width) exported embeddings, when asked for."""


def frame_scores(pred: FramePredictions, moments: metrics.Moments) -> dict[str, float]:
    """CCC per label over every valid labelled frame (videos concatenated) and their mean ``va_score``."""
    clock = pred.clock
    out: dict[str, float] = {}
    for k, label in enumerate(clock.labels):
        out[f"ccc_{label}"] = float(metrics.ccc(pred.preds[:, k], clock.targets[:, k], clock.target_mask,
                                                moments=moments))
    out[SCORE_KEY] = float(np.mean([out[f"ccc_{label}"] for label in clock.labels]))
    return out


def _fits(values: torch.Tensor, device: torch.device, share: float = 0.5) -> bool:
    """Whether ``values`` take at most ``share`` of the device's free memory (always on CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return bool(values.numel() * values.element_size() <= share * int(free))


class VATask(abc.ABC):
    """Shared parts of the three tasks (see the module docstring); subclasses define the view."""

    score_key = SCORE_KEY
    view: ClassVar[str] = ""

    def __init__(self, config: VAConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.clocks = dict(clocks)
        every = [v for clock in clocks.values() for v in clock.video_ids]
        self.input: InputModality = load_input(fs, config.input_modality, list(dict.fromkeys(every)),
                                               config.input_columns)
        # Stored dtype, one tensor; columns cut once (a copy only when a range is set). It lives on the
        # training device when it fits there, else in host memory and each batch is moved.
        values = torch.from_numpy(np.ascontiguousarray(self.input.matrix()))
        self.storage = self.device if _fits(values, self.device) else torch.device("cpu")
        if self.storage != self.device:
            logger.info("%s (%.1f GB) stays in host memory; batches are copied to %s",
                        config.input_modality, values.numel() * values.element_size() / 1e9, self.device)
        self.values = values.to(self.storage)
        self._prepared: dict[int, tuple[FrameClock, Any]] = {}

    @property
    def input_width(self) -> int:
        return self.input.width

    @property
    def input_dims(self) -> dict[str, int]:
        """Feature width of each input stream (what the model builder is given)."""
        return {"input": self.input_width}

    def _tensor(self, array: npt.NDArray[Any]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def _index(self, array: npt.NDArray[Any]) -> torch.Tensor:
        """An index (or mask) into the stored values, on their device."""
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.storage)

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Stored rows as float32 on the training device."""
        return self.values[rows].to(self.device, non_blocking=True).float()

    def _batches(self, n: int, generator: torch.Generator, batch_size: int,
                 ) -> Iterator[npt.NDArray[np.int64]]:
        order = torch.randperm(n, generator=generator).numpy()
        for i in range(0, n, batch_size):
            yield order[i:i + batch_size]

    def _view(self, clock: FrameClock) -> Any:
        """The clock's prepared view, built once per clock object (the validation clock every epoch)."""
        cached = self._prepared.get(id(clock))
        if cached is None or cached[0] is not clock:
            cached = (clock, self._prepare(clock))
            self._prepared[id(clock)] = cached
        return cached[1]

    @abc.abstractmethod
    def _prepare(self, clock: FrameClock) -> Any:
        """The clock's example view (index arrays)."""

    @abc.abstractmethod
    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's training batches, shuffled by ``generator``."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's training loss on one batch."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return frame_scores(self.predict(model, self.clocks[self.config.val_split]), self.config.eval_moments)

    @abc.abstractmethod
    def predict(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                ) -> FramePredictions:
        """Frame outputs (and embeddings) of ``model`` on every frame of ``clock``."""

    def init_model(self, model: torch.nn.Module) -> dict[str, Any]:
        """Set up a freshly built model before training (Kookmin: its prompt bank, from the store's
        provenance); returns what goes into run.json (nothing by default)."""
        return {}

    def write_run_extras(self, model: torch.nn.Module, clock: FrameClock, run_dir: Path) -> dict[str, Any]:
        """Task-specific outputs of a finished run on the validation clock (fusion: contribution maps);
        returns what goes into run.json (nothing by default)."""
        return {}


class FrameWindowTask(VATask):
    """``frame-windows``: fixed frame windows over the clock (``ras-face``)."""

    view = "frame-windows"
    config: RasFaceConfig

    def __init__(self, config: RasFaceConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> None:
        super().__init__(config, fs, clocks)
        if config.train_split not in clocks:  # prediction only
            return
        self.train = self._view(clocks[config.train_split])
        rows, valid = self.train.windows.gather_rows()
        usable = (valid & self.train.loss_mask[rows]).any(axis=1)
        self.train_windows = self.train.windows.subset(usable)
        if len(self.train_windows) == 0:
            raise ValueError(f"no {config.train_split} window has a labelled frame with usable input")

    @dataclass(frozen=True, kw_only=True, eq=False)
    class _Prepared:
        clock: FrameClock
        windows: Windows
        index: torch.Tensor
        input_valid: torch.Tensor
        loss_mask: npt.NDArray[np.bool_]

    def _prepare(self, clock: FrameClock) -> FrameWindowTask._Prepared:
        cfg = self.config
        aligned = align_frame_input(self.input, clock, max_fill_s=cfg.max_fill_s)
        loss_mask = clock.target_mask & aligned.valid & (cfg.train_on_filled | ~aligned.filled)
        return self._Prepared(clock=clock, windows=frame_windows(clock, window=cfg.window, hop=cfg.hop),
                              index=self._index(aligned.index), input_valid=self._tensor(aligned.valid),
                              loss_mask=loss_mask)

    def _inputs(self, prep: _Prepared, rows: npt.NDArray[np.int64]) -> torch.Tensor:
        x = self._gather(prep.index[self._index(rows)])
        r = self._tensor(rows)
        return x * prep.input_valid[r].unsqueeze(-1).to(x.dtype)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        prep = self.train
        for which in self._batches(len(self.train_windows), generator, self.config.batch_size):
            rows, valid = self.train_windows.gather_rows(which)
            yield {"x": self._inputs(prep, rows), "pad": self._tensor(valid),
                   "y": self._tensor(prep.clock.targets[rows]),
                   "mask": self._tensor(valid & prep.loss_mask[rows])}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        preds = model(batch["x"], batch["pad"]).float()
        per_window = metrics.ccc(preds, batch["y"], batch["mask"].unsqueeze(-1), dim=1,
                                 eps=self.config.ccc_eps)
        has = batch["mask"].any(dim=1)
        weights = torch.tensor(self.config.loss_weights, dtype=preds.dtype, device=preds.device)
        loss: torch.Tensor = ((1 - per_window[has]) * weights).mean()
        return loss

    def predict(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                ) -> FramePredictions:
        prep = self._view(clock)
        n_labels = len(clock.labels)
        total = torch.zeros(clock.n_rows, n_labels, dtype=torch.float64, device=self.device)
        emb_total: torch.Tensor | None = None
        count = torch.zeros(clock.n_rows, dtype=torch.float64, device=self.device)
        step = self.config.batch_size * EVAL_BATCH_FACTOR
        for start in range(0, len(prep.windows), step):
            which = np.arange(start, min(start + step, len(prep.windows)))
            rows, valid = prep.windows.gather_rows(which)
            pad = self._tensor(valid)
            emb, out = model.embed(self._inputs(prep, rows), pad)
            r = self._tensor(rows[valid])
            total.index_add_(0, r, out[pad].double())
            count.index_add_(0, r, torch.ones_like(r, dtype=torch.float64))
            if embeddings:
                if emb_total is None:
                    emb_total = torch.zeros(clock.n_rows, emb.shape[-1], dtype=torch.float64,
                                            device=self.device)
                emb_total.index_add_(0, r, emb[pad].double())
        covered = (count > 0).cpu().numpy()
        safe = count.clamp(min=1).unsqueeze(-1)
        preds = fill_nearest(clock, (total / safe).cpu().numpy(), covered)
        emb_np = None
        if emb_total is not None:
            emb_np = fill_nearest(clock, (emb_total / safe).cpu().numpy(), covered).astype(np.float32)
        return FramePredictions(clock=clock, preds=preds, covered=covered, embeddings=emb_np)


class SegmentTask(VATask):
    """``segments``: runs of segment rows per video (``ras-behaviour``)."""

    view = "segments"
    config: RasBehaviourConfig

    def __init__(self, config: RasBehaviourConfig, fs: FeatureStore,
                 clocks: Mapping[str, FrameClock]) -> None:
        super().__init__(config, fs, clocks)
        if config.train_split not in clocks:  # prediction only
            return
        self.train = self._view(clocks[config.train_split])
        rows, valid = self.train.windows.gather_rows()
        usable = (valid & self.train.target_mask[rows]).any(axis=1)
        self.train_windows = self.train.windows.subset(usable)
        if len(self.train_windows) == 0:
            raise ValueError(f"no {config.train_split} segment run holds a labelled segment")

    @dataclass(frozen=True, kw_only=True, eq=False)
    class _Prepared:
        clock: FrameClock
        segments: Segments
        windows: Windows
        seg_rows: torch.Tensor
        seg_valid: npt.NDArray[np.bool_]
        targets: npt.NDArray[np.float32]
        target_mask: npt.NDArray[np.bool_]

    def _prepare(self, clock: FrameClock) -> SegmentTask._Prepared:
        segments = sort_segments(self.input.packed, clock)
        targets, target_mask = segment_targets(segments, clock)
        windows = segment_windows(segments, window=self.config.window, stride=self.config.stride,
                                  videos=range(len(clock)))
        return self._Prepared(clock=clock, segments=segments, windows=windows,
                              seg_rows=self._index(segments.rows), seg_valid=segments.valid,
                              targets=targets, target_mask=target_mask & segments.valid)

    def _batch(self, prep: _Prepared, rows: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_],
               ) -> tuple[torch.Tensor, torch.Tensor]:
        present = valid & prep.seg_valid[rows]
        x = self._gather(prep.seg_rows[self._index(rows)])
        return x, self._tensor(present)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        prep = self.train
        for which in self._batches(len(self.train_windows), generator, self.config.batch_size):
            rows, valid = self.train_windows.gather_rows(which)
            x, present = self._batch(prep, rows, valid)
            yield {"x": x, "pad": present, "y": self._tensor(prep.targets[rows]),
                   "mask": self._tensor(valid & prep.target_mask[rows])}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        preds = model(batch["x"], batch["pad"]).float()
        mask = batch["mask"]
        per_label = metrics.ccc(preds[mask], batch["y"][mask], dim=0, moments="sample")
        loss: torch.Tensor = (1 - per_label).mean()
        return loss

    def predict(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                ) -> FramePredictions:
        prep = self._view(clock)
        n_seg = prep.segments.rows.shape[0]
        outs, embs, all_rows, all_valid = [], [], [], []
        step = self.config.batch_size * EVAL_BATCH_FACTOR
        for start in range(0, len(prep.windows), step):
            rows, valid = prep.windows.gather_rows(np.arange(start, min(start + step, len(prep.windows))))
            x, present = self._batch(prep, rows, valid)
            emb, out = model.embed(x, present)
            outs.append(out.double().cpu().numpy())
            if embeddings:
                embs.append(emb.float().cpu().numpy())
            all_rows.append(rows)
            all_valid.append(valid)
        if not outs:
            empty = np.zeros((clock.n_rows, len(clock.labels)))
            return FramePredictions(clock=clock, preds=empty, covered=np.zeros(clock.n_rows, bool))
        rows, valid = np.concatenate(all_rows), np.concatenate(all_valid)
        seg_preds, seg_covered = overlap_mean_rows(n_seg, rows, valid, np.concatenate(outs))
        preds, covered = expand_segments(prep.segments, seg_preds, seg_covered, clock)
        emb_np = None
        if embeddings:
            seg_emb, _ = overlap_mean_rows(n_seg, rows, valid, np.concatenate(embs))
            emb_np = fill_nearest(clock, expand_segments(prep.segments, seg_emb, seg_covered, clock)[0],
                                  covered).astype(np.float32)
        return FramePredictions(clock=clock, preds=fill_nearest(clock, preds, covered), covered=covered,
                                embeddings=emb_np)


class AudioWindowTask(VATask):
    """``audio-windows``: 4 s windows of frame-level audio states with one-second bins (``ras-audio``)."""

    view = "audio-windows"
    config: RasAudioConfig

    def __init__(self, config: RasAudioConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> None:
        super().__init__(config, fs, clocks)
        if config.train_split not in clocks:  # prediction only
            return
        train = self._view(clocks[config.train_split])
        enough = train.bin_mask.sum(axis=1) >= max(config.min_valid_bins, 1)
        keep = enough & (train.active >= config.min_active)
        self.train = train.subset(keep)
        if len(self.train) == 0:
            raise ValueError(f"no {config.train_split} audio window has {config.min_valid_bins} labelled "
                             "bins")

    def _prepare(self, clock: FrameClock) -> AudioWindows:
        cfg = self.config
        return audio_windows(self.input.packed, clock, window_s=cfg.window_s, hop_s=cfg.hop_s,
                             min_window_s=cfg.min_window_s, n_bins=cfg.n_chunks, videos=range(len(clock)))

    def _inputs(self, windows: Windows, which: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        rows, valid = windows.gather_rows(which)
        return self._gather(self._index(rows)), self._tensor(valid)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for which in self._batches(len(self.train), generator, self.config.batch_size):
            x, pad = self._inputs(self.train.windows, which)
            yield {"x": x, "pad": pad, "y": self._tensor(self.train.bin_targets[which]),
                   "mask": self._tensor(self.train.bin_mask[which])}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.config
        preds = model(batch["x"], batch["pad"]).float()
        mask = batch["mask"]
        p, y = preds[mask], batch["y"][mask]
        mse = ((p - y) ** 2).mean()
        if p.shape[0] < 4:
            return mse
        ccc = metrics.ccc(p, y, dim=0)
        weights = torch.tensor(cfg.loss_weights, dtype=p.dtype, device=p.device)
        loss: torch.Tensor = ((1 - ccc) * weights).sum() + cfg.mse_weight * mse
        return loss

    def predict(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                ) -> FramePredictions:
        windows: AudioWindows = self._view(clock)
        outs, embs = [], []
        step = self.config.batch_size * EVAL_BATCH_FACTOR
        for start in range(0, len(windows), step):
            x, pad = self._inputs(windows.windows, np.arange(start, min(start + step, len(windows))))
            emb, out = model.embed(x, pad)
            outs.append(out.double().cpu().numpy())
            if embeddings:
                embs.append(emb.float().cpu().numpy())
        n_labels = len(clock.labels)
        if not outs:
            return FramePredictions(clock=clock, preds=np.zeros((clock.n_rows, n_labels)),
                                    covered=np.zeros(clock.n_rows, bool))
        vids = windows.windows.video
        preds, covered = interpolate_windows(clock, vids, windows.t0, windows.t1, np.concatenate(outs))
        emb_np = None
        if embeddings:
            emb_vals, _ = interpolate_windows(clock, vids, windows.t0, windows.t1, np.concatenate(embs))
            emb_np = fill_nearest(clock, emb_vals, covered).astype(np.float32)
        return FramePredictions(clock=clock, preds=fill_nearest(clock, preds, covered), covered=covered,
                                embeddings=emb_np)


TASKS: dict[str, type[VATask]] = {cls.view: cls for cls in (FrameWindowTask, SegmentTask, AudioWindowTask)}
"""Task class per view name (a config class names its view in ``view``)."""


def make_task(config: VAConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> VATask:
    """The task of ``config.view`` on the given split clocks (without the train split's clock, a task that
    only predicts)."""
    try:
        cls = TASKS[config.view]
    except KeyError:
        raise ValueError(f"{type(config).__name__} names view {config.view!r}; known views: "
                         f"{sorted(TASKS)}") from None
    return cls(config, fs, clocks)
