"""The ``fusion-windows`` task: frame windows over several prediction modalities on one frame clock.

Each stream's store modality (a frame modality written by ``affectcache predict``: predictions ‖ the
head's embedding per label frame) is loaded once and put on the split's frame clock *by index* with part
1's nearest-valid rule (:func:`~affectcache.trainers.data.inputs.align_frame_input`); when
``fill_missing`` is off, frames without their own row are zeros and masked for that stream. Examples are
part 1's frame windows (:func:`~affectcache.trainers.data.views.frame_windows`); a batch becomes a
:class:`~affectcache.trainers.models.fusion_batch.FusionBatch` and the model's own ``loss`` is used.
Frame outputs are the overlap mean of the windows, frames no window reaches take the nearest predicted
frame (as part 1's frame-window task).

Token streams (``config.token_streams()``; RAAV's audio): the window's frames are split into ``n`` equal
chunks and each chunk's token is the mean of the stream's valid rows in it (valid when it has one). With
RAAV's defaults (100-frame windows every 50 = 4 s every 2 s at Aff-Wild2's 25 fps, 4 tokens) the tokens
are one-second means of the audio head's frame outputs, the shape of the authors' four chunk tokens.
RAAV's training rule that masks a window's audio by mouth-open seconds and face coverage needs per-frame
mouth/face measures that prediction modalities do not carry; it is not applied here (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from affectcache.trainers.data.clock import FrameClock
from affectcache.trainers.data.inputs import InputModality, align_frame_input, load_input
from affectcache.trainers.data.views import Windows, fill_nearest, frame_windows
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput
from affectcache.trainers.va_tasks import EVAL_BATCH_FACTOR, TASKS, FramePredictions, VATask, _fits

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.fusion.config import FusionVAConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, eq=False)
class FusionView:
    """A clock's windows and, per stream, the stored row and validity of every clock row."""

    clock: FrameClock
    """The frames."""
    windows: Windows
    """Frame windows over the clock."""
    index: dict[str, torch.Tensor]
    """Stream -> (n_clock,) stored row (on the values' device)."""
    valid: dict[str, torch.Tensor]
    """Stream -> (n_clock,) whether the stream is usable at the frame (training device)."""


class FusionWindowTask(VATask):
    """``fusion-windows``: frame windows over several streams (``dcmmoe``, ``dcmmoe-released``)."""

    view = "fusion-windows"
    config: FusionVAConfig

    def __init__(self, config: FusionVAConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> None:
        # Not VATask.__init__: that loads one input; the helpers (_tensor, _batches, _view) are shared.
        self.config = config
        self.device = torch.device(config.device)
        self.clocks = dict(clocks)
        every = list(dict.fromkeys(v for clock in clocks.values() for v in clock.video_ids))
        self.inputs: dict[str, InputModality] = {
            stream: load_input(fs, modality, every, None)
            for stream, modality in zip(config.streams(), config.input_names(), strict=True)}
        values = {s: torch.from_numpy(np.ascontiguousarray(inp.matrix())) for s, inp in self.inputs.items()}
        total = sum(v.numel() * v.element_size() for v in values.values())
        fits = _fits(torch.empty(total, dtype=torch.uint8), self.device)
        self.storage = self.device if fits else torch.device("cpu")
        if not fits:
            logger.info("fusion inputs (%.1f GB) stay in host memory; batches are copied to %s", total / 1e9,
                        self.device)
        self.values = {s: v.to(self.storage) for s, v in values.items()}
        self._prepared = {}
        if config.token_streams() and getattr(config, "mask_audio_in_training", False):
            logger.info("the audio-masking training rule needs mouth-open and face-coverage measures per "
                        "window, which prediction modalities lack; audio tokens are kept wherever valid")
        if config.train_split not in clocks:  # prediction only
            return
        self.train: FusionView = self._view(clocks[config.train_split])
        rows, valid = self.train.windows.gather_rows()
        usable = (valid & self.train.clock.target_mask[rows]).any(axis=1)
        self.train_windows = self.train.windows.subset(usable)
        if len(self.train_windows) == 0:
            raise ValueError(f"no {config.train_split} window has a labelled frame")

    @property
    def input_width(self) -> int:
        return sum(self.input_dims.values())

    @property
    def input_dims(self) -> dict[str, int]:
        return {s: inp.width for s, inp in self.inputs.items()}

    def _prepare(self, clock: FrameClock) -> FusionView:
        cfg = self.config
        index, valid = {}, {}
        for stream, source in self.inputs.items():
            aligned = align_frame_input(source, clock, max_fill_s=cfg.max_fill_s)
            usable = aligned.valid & (cfg.fill_missing | ~aligned.filled)
            index[stream] = self._index(aligned.index)
            valid[stream] = self._tensor(usable)
        return FusionView(clock=clock, windows=frame_windows(clock, window=cfg.window, hop=cfg.hop),
                          index=index, valid=valid)

    def _batch(self, view: FusionView, rows: npt.NDArray[np.int64], pad: npt.NDArray[np.bool_],
               ) -> FusionBatch:
        mask = self._tensor(pad)
        r_store, r_dev = self._index(rows), self._tensor(rows)
        inputs, valid = {}, {}
        tokens = self.config.token_streams()
        for s, values in self.values.items():
            v = view.valid[s][r_dev] & mask
            x = values[view.index[s][r_store]].to(self.device, non_blocking=True).float()
            x = x * v.unsqueeze(-1).to(x.dtype)
            if s in tokens:
                x, v = _chunk_tokens(x, v, tokens[s])
            inputs[s] = x
            valid[s] = v
        return FusionBatch(inputs=inputs, valid=valid, mask=mask)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, Any]]:
        view = self.train
        for which in self._batches(len(self.train_windows), generator, self.config.batch_size):
            rows, pad = self.train_windows.gather_rows(which)
            yield {"batch": self._batch(view, rows, pad), "y": self._tensor(view.clock.targets[rows]),
                   "mask": self._tensor(pad & view.clock.target_mask[rows])}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        output: FusionOutput = model(batch["batch"])
        loss: torch.Tensor = model.loss(output, batch["y"].float(), batch["mask"])
        return loss

    def predict(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                ) -> FramePredictions:
        return self.predict_with_weights(model, clock, embeddings=embeddings)[0]

    def predict_with_weights(self, model: torch.nn.Module, clock: FrameClock, *, embeddings: bool = False,
                             ) -> tuple[FramePredictions, dict[str, npt.NDArray[np.float64]]]:
        """Frame outputs and, per stream, the model's own per-frame contribution weight (overlap means;
        empty for a model without a gate)."""
        view: FusionView = self._view(clock)
        n = clock.n_rows
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros(n, dtype=torch.float64, device=self.device)
        step = self.config.batch_size * EVAL_BATCH_FACTOR
        for start in range(0, len(view.windows), step):
            rows, pad = view.windows.gather_rows(np.arange(start, min(start + step, len(view.windows))))
            out: FusionOutput = model(self._batch(view, rows, pad))
            keep = self._tensor(pad)
            r = self._tensor(rows[pad])
            parts = {"preds": out.preds, **({"embedding": out.embedding} if embeddings else {}),
                     **{f"weight:{m}": w.unsqueeze(-1) for m, w in out.weights.items()}}
            for key, value in parts.items():
                if key not in sums:
                    sums[key] = torch.zeros(n, value.shape[-1], dtype=torch.float64, device=self.device)
                sums[key].index_add_(0, r, value[keep].double())
            count.index_add_(0, r, torch.ones_like(r, dtype=torch.float64))
        covered = (count > 0).cpu().numpy()
        safe = count.clamp(min=1).unsqueeze(-1)
        mean = {k: fill_nearest(clock, (v / safe).cpu().numpy(), covered) for k, v in sums.items()}
        preds = mean.get("preds", np.zeros((n, len(clock.labels))))
        emb = mean["embedding"].astype(np.float32) if "embedding" in mean else None
        weights = {k.split(":", 1)[1]: v[:, 0] for k, v in mean.items() if k.startswith("weight:")}
        return FramePredictions(clock=clock, preds=preds, covered=covered, embeddings=emb), weights


def _chunk_tokens(x: torch.Tensor, valid: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, W, D)`` rows (zeros where invalid) -> ``(B, n, D)`` chunk means over the valid rows, and
    ``(B, n)`` whether a chunk has one."""
    width = x.shape[1]
    chunk = torch.arange(width, device=x.device) * n // width
    onehot = torch.nn.functional.one_hot(chunk, n).to(x.dtype)                     # (W, n)
    weight = valid.to(x.dtype).unsqueeze(-1) * onehot                              # (B, W, n)
    count = weight.sum(1)                                                          # (B, n)
    means = torch.einsum("bwd,bwn->bnd", x, weight) / count.clamp(min=1).unsqueeze(-1)
    return means, count > 0


TASKS[FusionWindowTask.view] = FusionWindowTask
