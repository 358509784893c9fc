"""The ``fusion-windows`` task: frame windows over several prediction modalities on one frame clock.

Each stream's store modality (a frame modality written by ``affectcache predict``: predictions ‖ the
head's embedding per label frame) is loaded once and put on the split's frame clock *by index* with part
1's nearest-valid rule (:func:`~affectcache.trainers.data.inputs.align_frame_input`; window rows such as
AST's are expanded to the frames they cover, :func:`~affectcache.trainers.data.inputs.align_window_input`);
when ``fill_missing`` is off, frames without their own row are zeros and masked for that stream. Examples are
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
from affectcache.trainers.data.inputs import (
    ClockInput,
    InputModality,
    align_frame_input,
    align_window_input,
    load_input,
)
from affectcache.trainers.data.views import Windows, fill_nearest, frame_windows
from affectcache.trainers.models.fusion_batch import FusionBatch, FusionOutput
from affectcache.trainers.va_tasks import EVAL_BATCH_FACTOR, TASKS, FramePredictions, VATask, _fits

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

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
        self._loaded: dict[str, InputModality] = {}
        self.inputs: dict[str, InputModality] = {
            stream: self._load_stream(fs, stream, modality, every)
            for stream, modality in zip(config.streams(), config.input_names(), strict=True)}
        # Streams given one loaded source (the base loader gives one per store modality: the demo's audio
        # head feeds a frame stream and the tokens) share its array, its alignment and each batch's gather;
        # sources maps each stream to the first stream with its source.
        first: dict[int, str] = {}
        self.sources: dict[str, str] = {s: first.setdefault(id(inp), s) for s, inp in self.inputs.items()}
        values = {k: torch.from_numpy(np.ascontiguousarray(self.inputs[k].matrix()))
                  for k in dict.fromkeys(self.sources.values())}
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

    def _load_stream(self, fs: FeatureStore, stream: str, modality: str, video_ids: list[str],
                     ) -> InputModality:
        """The store modality feeding ``stream`` (every column), loaded once per modality."""
        if modality not in self._loaded:
            self._loaded[modality] = load_input(fs, modality, video_ids, None)
        return self._loaded[modality]

    @property
    def input_width(self) -> int:
        return sum(self.input_dims.values())

    @property
    def input_dims(self) -> dict[str, int]:
        return {s: inp.width for s, inp in self.inputs.items()}

    def _prepare(self, clock: FrameClock) -> FusionView:
        cfg = self.config
        index, valid = {}, {}
        for key in dict.fromkeys(self.sources.values()):
            aligned = align_input(self.inputs[key], clock, max_fill_s=cfg.max_fill_s)
            index[key] = self._index(aligned.index)
            valid[key] = self._tensor(aligned.valid & (cfg.fill_missing | ~aligned.filled))
        return FusionView(clock=clock, windows=frame_windows(clock, window=cfg.window, hop=cfg.hop),
                          index={s: index[k] for s, k in self.sources.items()},
                          valid={s: valid[k] for s, k in self.sources.items()})

    def _batch(self, view: FusionView, rows: npt.NDArray[np.int64], pad: npt.NDArray[np.bool_],
               drop: str | None = None) -> FusionBatch:
        mask = self._tensor(pad)
        r_store, r_dev = self._index(rows), self._tensor(rows)
        inputs, valid = {}, {}
        tokens = self.config.token_streams()
        gathered: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for s, key in self.sources.items():
            if key not in gathered:
                v = view.valid[s][r_dev] & mask
                # index_select on the flat rows: several times faster than advanced indexing on CPU.
                flat = self.values[key].index_select(0, view.index[s][r_store].reshape(-1))
                x = flat.view(*rows.shape, -1).to(self.device, non_blocking=True).float()
                gathered[key] = (x.mul_(v.unsqueeze(-1).to(x.dtype)), v)
            x, v = gathered[key]
            if s in tokens:
                x, v = _chunk_tokens(x, v, tokens[s])
            inputs[s] = x
            valid[s] = v
        batch = FusionBatch(inputs=inputs, valid=valid, mask=mask)
        return batch.without(drop) if drop is not None else batch

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
                             drop: str | None = None,
                             ) -> tuple[FramePredictions, dict[str, npt.NDArray[np.float64]]]:
        """Frame outputs and, per stream, the model's own per-frame contribution weight (overlap means;
        empty for a model without a gate); ``drop`` masks that stream everywhere (ablation)."""
        view: FusionView = self._view(clock)
        n = clock.n_rows
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros(n, dtype=torch.float64, device=self.device)
        step = self.config.batch_size * EVAL_BATCH_FACTOR
        for start in range(0, len(view.windows), step):
            rows, pad = view.windows.gather_rows(np.arange(start, min(start + step, len(view.windows))))
            out: FusionOutput = model(self._batch(view, rows, pad, drop))
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


    def write_run_extras(self, model: torch.nn.Module, clock: FrameClock, run_dir: Path) -> dict[str, Any]:
        """Contribution maps of the validation videos (see :func:`write_contributions`)."""
        return {"contributions": write_contributions(self, model, clock, run_dir)}


def write_contributions(task: FusionWindowTask, model: torch.nn.Module, clock: FrameClock,
                        run_dir: Path) -> dict[str, Any]:
    """Per-frame modality contributions on ``clock`` into ``run_dir/contributions``, and their summary.

    Two maps per stream: the model's own gate weight (RAAV's reliability weights, DCMMOE's expert gate
    spread over the experts' streams; absent for a model without a gate) and the model-agnostic ablation
    effect ``|prediction − prediction without the stream|`` per frame and dimension. ``maps.npz`` holds
    them (``gate/<stream>`` (n,), ``ablation/<stream>`` (n, 2), ``video_ids``, ``offsets``, ``time_s``),
    ``ablation.csv`` the CCC per video with and without each stream, ``summary.json`` the mean contribution
    per stream (gate weight; ablation share of valence and of arousal, normalised over streams; mean CCC
    drop per dimension). One PNG per validation video (target vs estimate above a stream × time heatmap)
    goes to ``plots/contributions/`` when matplotlib is installed.
    """
    from affectcache.extractors.core.atomic import atomic_path, atomic_write_json, atomic_write_text
    from affectcache.trainers import metrics

    folder = run_dir / "contributions"
    folder.mkdir(parents=True, exist_ok=True)
    full, gates = task.predict_with_weights(model, clock)
    streams = list(task.inputs)
    effect: dict[str, npt.NDArray[np.float64]] = {}
    drop_ccc: dict[str, npt.NDArray[np.float64]] = {}
    groups, mask = clock.row_video, clock.target_mask

    def per_video(preds: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.stack([metrics.per_group_scores(preds[:, k], clock.targets[:, k], groups, mask)
                         for k in range(len(clock.labels))], axis=1)

    base = per_video(full.preds)
    rows = ["video_id,stream," + ",".join(f"ccc_{lb},ccc_{lb}_without" for lb in clock.labels)]
    for s in streams:
        masked, _ = task.predict_with_weights(model, clock, drop=s)
        effect[s] = np.abs(full.preds - masked.preds)
        without = per_video(masked.preds)
        drop_ccc[s] = base - without
        for i in range(base.shape[0]):
            pairs = ",".join(f"{base[i, k]:.6f},{without[i, k]:.6f}" for k in range(base.shape[1]))
            rows.append(f"{clock.video_ids[i]},{s},{pairs}")
    arrays = {**{f"gate/{s}": w for s, w in gates.items()}, **{f"ablation/{s}": e for s, e in effect.items()},
              "video_ids": np.asarray(clock.video_ids), "offsets": clock.offsets, "time_s": clock.time_s}
    with atomic_path(folder / "maps.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    atomic_write_text(folder / "ablation.csv", "\n".join(rows) + "\n")
    total = np.stack([effect[s][mask].mean(axis=0) for s in streams])                 # (S, labels)
    share = total / np.maximum(total.sum(axis=0, keepdims=True), 1e-12)
    summary: dict[str, Any] = {
        "gate": {s: float(w[mask].mean()) for s, w in gates.items()},
        "ablation_share": {lb: {s: float(share[j, k]) for j, s in enumerate(streams)}
                           for k, lb in enumerate(clock.labels)},
        "ccc_drop": {lb: {s: float(np.nanmean(drop_ccc[s][:, k])) for s in streams}
                     for k, lb in enumerate(clock.labels)},
    }
    atomic_write_json(folder / "summary.json", summary)
    try:
        from affectcache.trainers.plots import plot_contributions
    except ImportError as exc:
        logger.info("contribution plots left out (%s); install the plots extra to get them", exc)
        return summary
    maps = gates or {f"{s} ({lb})": effect[s][:, k] for s in streams for k, lb in enumerate(clock.labels)}
    (run_dir / "plots" / "contributions").mkdir(parents=True, exist_ok=True)
    for i, vid in enumerate(clock.video_ids):
        plot_contributions(full, i, maps, run_dir / "plots" / "contributions" / f"{vid}.png",
                           title="gate weight" if gates else "ablation effect")
    return summary


def align_input(source: InputModality, clock: FrameClock, *, max_fill_s: float | None) -> ClockInput:
    """A stream on the frame clock by index: frame rows by the nearest-valid rule, window/segment rows
    (``start_s``/``end_s``) expanded to the frames they cover."""
    if source.packed.kind == "frame":
        return align_frame_input(source, clock, max_fill_s=max_fill_s)
    return align_window_input(source, clock, max_fill_s=max_fill_s)


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
