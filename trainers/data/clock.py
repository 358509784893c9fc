"""The frame clock: one row per label frame of every video, with the targets, packed like the store's arrays.

A video's clock is its label track's rows (Aff-Wild2: one row per annotation frame at the video's fps;
the demo: 25 fps). Label tracks of one store share rows (valence and arousal come from the same files),
so the clock's targets are the tracks stacked: ``targets[:, k]`` is ``labels[k]``. A frame's targets are
valid when every track's row is valid and finite and none holds the −5 "unannotated" code.

Videos without label entries (a test split) get a clock from their manifest row's ``fps`` and
``n_label_rows`` (what the Aff-Wild2 adapter records), with every target masked, so predictions can still
be made on the frames a submission asks for.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from affectcache.store.errors import StoreError
from affectcache.store.zarr_store import label_modality

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

INVALID_LABEL = -5.0
"""Aff-Wild2's code for an unannotated frame (masked wherever it appears)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class FrameClock:
    """Label frames of several videos, concatenated in ``video_ids`` order (offsets as in the store)."""

    video_ids: tuple[str, ...]
    """Videos, in row order."""
    offsets: npt.NDArray[np.int64]
    """(n_videos + 1,) row offsets."""
    frame: npt.NDArray[np.int64]
    """(n,) frame index of each row within its video (0-based)."""
    time_s: npt.NDArray[np.float64]
    """(n,) time of each row, seconds from the video start."""
    fps: npt.NDArray[np.float64]
    """(n_videos,) frames per second of each video's clock."""
    labels: tuple[str, ...]
    """Label tracks, in target column order."""
    targets: npt.NDArray[np.float32]
    """(n, n_labels) target values (0 where invalid)."""
    target_mask: npt.NDArray[np.bool_]
    """(n,) whether every target of the row is valid."""
    labelled: npt.NDArray[np.bool_]
    """(n_videos,) whether the video's clock came from its label tracks (else from the manifest)."""

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.video_ids)

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.video_ids)}

    def index(self, video_id: str) -> int:
        """Position of a video (KeyError naming it when it is not on the clock)."""
        try:
            return self._positions[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not on this clock") from None

    def rows(self, video_id: str) -> slice:
        """Row slice of one video."""
        i = self.index(video_id)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    @functools.cached_property
    def row_video(self) -> npt.NDArray[np.int64]:
        """(n,) video position of every row (the group index for per-video scores)."""
        return np.repeat(np.arange(len(self.video_ids), dtype=np.int64), np.diff(self.offsets))

    def subset(self, video_ids: Sequence[str]) -> FrameClock:
        """The clock of some of the videos, in the given order."""
        pos = [self.index(v) for v in video_ids]
        rows = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in pos]
        take = np.concatenate(rows) if rows else np.empty(0, np.int64)
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return FrameClock(video_ids=tuple(video_ids), offsets=offsets, frame=self.frame[take],
                          time_s=self.time_s[take], fps=self.fps[pos], labels=self.labels,
                          targets=self.targets[take], target_mask=self.target_mask[take],
                          labelled=self.labelled[pos])

    def labels_digest(self) -> str:
        """sha256 of the video ids, frames, targets and mask: what a run's numbers depend on."""
        import hashlib

        digest = hashlib.sha256()
        targets = np.where(self.target_mask[:, None], self.targets, 0).astype(np.float32)
        ids = np.frombuffer("\n".join(self.video_ids).encode(), dtype=np.uint8)
        for part in (ids, self.offsets, self.frame, targets, self.target_mask):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()


def _fps_of(time_s: npt.NDArray[np.float64], frame: npt.NDArray[np.int64]) -> float:
    if frame.size < 2 or time_s[-1] == time_s[0]:
        return float("nan")
    return float((frame[-1] - frame[0]) / (time_s[-1] - time_s[0]))


def load_clock(fs: FeatureStore, labels: Sequence[str], video_ids: Sequence[str], *,
               manifest: Manifest | None = None) -> FrameClock:
    """The clock of ``video_ids`` from the store's label tracks (one ``load`` per track).

    Videos without a label entry take their clock from the manifest row's ``fps`` and ``n_label_rows``
    (targets masked); a video with neither is refused.

    Raises:
        StoreError: Label tracks of one video disagree on their frames, or a video has no clock.
    """
    if not labels:
        raise StoreError("a frame clock needs at least one label track")
    present = [set(fs.videos(label_modality(t))) for t in labels]
    labelled_ids = [v for v in video_ids if all(v in p for p in present)]
    packs = [fs.load(label_modality(t), labelled_ids) for t in labels]
    items = {it.video_id: it for it in manifest} if manifest is not None else {}
    frames, times, fps, targets, masks, labelled, lengths = [], [], [], [], [], [], []
    for vid in video_ids:
        if vid in packs[0]:
            sl = packs[0].rows(vid)
            frame = packs[0].row_arrays["frame"][sl]
            time_s = packs[0].row_arrays["time_s"][sl]
            cols, valid = [], np.ones(frame.shape[0], dtype=bool)
            for track, pack in zip(labels, packs, strict=True):
                tsl = pack.rows(vid)
                if not np.array_equal(pack.row_arrays["frame"][tsl], frame):
                    raise StoreError(f"labels/{track} and labels/{labels[0]} of {vid} have different frames; "
                                     "re-import the corpus labels")
                vals = np.asarray(pack.values[tsl], dtype=np.float32).reshape(frame.shape[0], -1)[:, 0]
                valid &= pack.mask[tsl] & np.isfinite(vals) & (vals != INVALID_LABEL)
                cols.append(vals)
            frames.append(frame)
            times.append(time_s)
            fps.append(_fps_of(time_s, frame))
            targets.append(np.where(valid[:, None], np.stack(cols, axis=1), 0.0).astype(np.float32))
            masks.append(valid)
            labelled.append(True)
        else:
            clock = _manifest_clock(items.get(vid), vid, labels)
            frames.append(np.arange(clock[1], dtype=np.int64))
            times.append(np.arange(clock[1], dtype=np.float64) / clock[0])
            fps.append(clock[0])
            targets.append(np.zeros((clock[1], len(labels)), dtype=np.float32))
            masks.append(np.zeros(clock[1], dtype=bool))
            labelled.append(False)
        lengths.append(frames[-1].shape[0])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def cat(parts: list[Any], dtype: Any, shape: tuple[int, ...] = ()) -> Any:
        return np.concatenate(parts).astype(dtype) if parts else np.empty((0, *shape), dtype=dtype)

    return FrameClock(video_ids=tuple(video_ids), offsets=offsets, frame=cat(frames, np.int64),
                      time_s=cat(times, np.float64), fps=np.asarray(fps, dtype=np.float64),
                      labels=tuple(labels),
                      targets=cat(targets, np.float32, (len(labels),)), target_mask=cat(masks, bool),
                      labelled=np.asarray(labelled, dtype=bool))


def _manifest_clock(item: Any, vid: str, labels: Sequence[str]) -> tuple[float, int]:
    extra = dict(item.labels) if item is not None else {}
    fps, n_rows = extra.get("fps"), extra.get("n_label_rows")
    if not fps or not n_rows:
        raise StoreError(f"{vid}: no labels/{labels[0]} entry and no fps + n_label_rows in its manifest "
                         "row, so it has no frame clock; import the corpus labels "
                         "(affectcache manifest ... --store)")
    return float(fps), int(n_rows)
