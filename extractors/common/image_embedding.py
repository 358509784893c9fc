"""Batched image embedders over video frames and face crops, with batches shared across videos.

:class:`ImageBatcher` streams images (whole frames, or crops) of many items into fixed-size model
batches and scatters the embeddings back to their rows, so memory stays bounded (a batch of images, one
more in flight, plus the outputs) and a batch can mix videos. On CUDA the forward of one batch runs on a
background thread while the next batch is decoded, cropped and preprocessed. Each image is embedded
independently of its batch companions (per-image preprocessing, eval-mode models), so results do not
depend on the grouping or the overlap (tested).

Two extractor bases use it:

- :class:`FaceCropEmbedder` (``requires = ("face",)``): crops cut in memory from the stored ``face`` boxes
  (:mod:`affectcache.extractors.common.face_crops`), rows = the ``face`` rows, ``mask`` = a crop was embedded.
  Values are ``(n, dim)``; with the ``all`` face policy ``(n, slots, dim)``, zeros in empty slots.
- :class:`FrameEmbedder`: whole sampled frames (:mod:`affectcache.extractors.media.frame_sampling`).

Subclasses load an :class:`ImageModel` (``prepare`` images on the CPU, ``forward`` them on the device) and
implement ``output_dim``.
"""

from __future__ import annotations

from abc import abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from affectcache.extractors.common.face_crops import face_row_frames, row_crops
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.media.frame_sampling import (
    FrameSamplingConfig,
    sample_frames,
    sampling_attrs,
    sampling_needs,
)
from affectcache.extractors.visual.face import FaceLayout

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from affectcache.extractors.media.decode_memo import MediaNeeds

C = TypeVar("C", bound=ExtractorConfig)
FC = TypeVar("FC", bound="FaceCropConfig")
SC = TypeVar("SC", bound=FrameSamplingConfig)


class ImageModel(Protocol):
    """A loaded image model, in two steps so preprocessing (CPU) can overlap the forward (GPU)."""

    def prepare(self, images: list[npt.NDArray[np.uint8]]) -> Any:
        """Model inputs for RGB uint8 images of any sizes (on the CPU; pinned when the model is on CUDA)."""

    def forward(self, prepared: Any) -> npt.NDArray[np.float32]:
        """``(n, dim)`` float32 embeddings of prepared inputs."""


class ImageBatcher:
    """Accumulates images with their destinations; embeds a full batch at a time.

    With ``overlap``, each batch's forward runs on a background thread while the caller decodes, crops
    and preprocesses the next batch (one batch in flight, so memory stays bounded); the embeddings land in
    the same places either way. Use as a context manager and call :meth:`finish` at the end.
    """

    def __init__(self, model: ImageModel, batch_size: int, *, overlap: bool = False) -> None:
        self._model = model
        self._batch_size = batch_size
        self._images: list[npt.NDArray[np.uint8]] = []
        self._targets: list[tuple[npt.NDArray[np.float32], tuple[Any, ...]]] = []
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="affectcache-forward")
                      if overlap else None)
        self._in_flight: tuple[Future[npt.NDArray[np.float32]], list[tuple[Any, ...]]] | None = None
        self.embedded = 0

    def __enter__(self) -> ImageBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, image: npt.NDArray[np.uint8], target: npt.NDArray[np.float32],
            index: tuple[Any, ...]) -> None:
        """Queue ``image``; its embedding goes to ``target[index]``."""
        self._images.append(image)
        self._targets.append((target, index))
        if len(self._images) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Embed whatever is queued (with ``overlap``: start embedding it)."""
        if not self._images:
            return
        prepared = self._model.prepare(self._images)
        targets = self._targets
        self._images, self._targets = [], []
        if self._pool is None:
            self._scatter(self._model.forward(prepared), targets)
            return
        self._collect()
        self._in_flight = (self._pool.submit(self._model.forward, prepared), targets)

    def finish(self) -> None:
        """Embed what is queued and wait for every embedding to land."""
        self.flush()
        self._collect()

    def _collect(self) -> None:
        if self._in_flight is not None:
            future, targets = self._in_flight
            self._in_flight = None
            self._scatter(future.result(), targets)

    def _scatter(self, out: npt.NDArray[np.float32], targets: list[tuple[Any, ...]]) -> None:
        out = np.asarray(out, dtype=np.float32)
        if out.shape[0] != len(targets):
            raise RuntimeError(f"embedder returned {out.shape[0]} rows for {len(targets)} images")
        for (target, index), row in zip(targets, out, strict=True):
            target[index] = row
        self.embedded += len(targets)


class _Embedder(Extractor[C]):
    """Shared parts of the image embedders."""

    modality_kind = "frame"

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Embedding width (loads the model)."""

    def _embed(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """``(len(images), output_dim)`` float32 embeddings of RGB uint8 images of any sizes."""
        model: ImageModel = self.model
        return model.forward(model.prepare(images))

    def _batcher(self, batch_size: int) -> ImageBatcher:
        """A batcher over this extractor's model; on CUDA each forward overlaps the next batch's CPU work
        (decoding, cropping, preprocessing)."""
        return ImageBatcher(self.model, batch_size, overlap=self._overlap())

    def _overlap(self) -> bool:
        return self.config.device.startswith("cuda")

    def _value_attrs(self) -> dict[str, Any]:
        """What the value columns mean (stored in every entry's attrs)."""
        return {"dim": self.output_dim}

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        return self.extract_batch([item], [upstream])[0]


@dataclass(frozen=True, kw_only=True)
class FaceCropConfig(ExtractorConfig):
    """Crop settings shared by the face-crop embedders."""

    crop_margin: float = 0.1
    """Each side of the face box is grown by this fraction of the box size before cropping."""

    square: bool = True
    """Grow the crop to a square around the box centre (the longer side wins), padding with black."""

    max_side: int = 640
    """Frames are decoded with the longer side at most this many pixels before crops are cut."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not 0.0 <= self.crop_margin <= 2.0:
            problems.append(f"crop_margin must be in [0, 2], got {self.crop_margin}")
        if self.max_side < 32:
            problems.append(f"max_side must be >= 32 pixels, got {self.max_side}")
        return problems


class FaceCropEmbedder(_Embedder[FC]):
    """Embeds the face crops of the stored ``face`` rows; batches cross videos."""

    requires = ("face",)

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        ups = list(upstream) if upstream is not None else [NO_UPSTREAM] * len(items)
        cfg = self.config
        dim = self.output_dim
        outputs: list[tuple[FeatureArray, npt.NDArray[np.float32], npt.NDArray[np.bool_]]] = []
        with self._batcher(cfg.batch_size) as batcher:
            for item, up in zip(items, ups, strict=True):
                face = up.get("face")
                if face is None:
                    raise ValueError(f"{self.name}: upstream modality 'face' missing for {item.video_id}")
                layout = FaceLayout.from_attrs(dict(face.attrs))
                policy = str(face.attrs["policy"])
                shape = (face.n_rows, layout.slots, dim) if policy == "all" else (face.n_rows, dim)
                values = np.zeros(shape, dtype=np.float32)
                filled = np.zeros(shape[:-1], dtype=bool)
                for row, vf in face_row_frames(item, face, cfg.max_side):
                    crops = row_crops(vf.rgb, face.values[row], layout, policy, margin=cfg.crop_margin,
                                      square=cfg.square)
                    for slot, crop in crops.items():
                        index = (row, slot) if policy == "all" else (row,)
                        batcher.add(crop, values, index)
                        filled[index] = True
                outputs.append((face, values, filled))
            batcher.finish()
        results = []
        for item, (face, values, filled) in zip(items, outputs, strict=True):
            mask = np.asarray(filled.any(axis=1) if filled.ndim == 2 else filled, dtype=bool)
            results.append(FeatureArray(
                video_id=item.video_id, kind="frame", values=values, frame=face.frame, time_s=face.time_s,
                mask=mask, attrs={**self._value_attrs(), "face_policy": face.attrs["policy"],
                                  "crops": int(filled.sum()), "no_face": not bool(mask.any())}))
        return results


class FrameEmbedder(_Embedder[SC]):
    """Embeds whole sampled frames; batches cross videos."""

    def media_needs(self) -> MediaNeeds:
        return sampling_needs(self.config)

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        cfg = self.config
        dim = self.output_dim
        pending = []
        with self._batcher(cfg.batch_size) as batcher:
            for item in items:
                offset_s = item.start_s or 0.0
                rows: list[npt.NDArray[np.float32]] = []
                index: list[int] = []
                times: list[float] = []
                # Frames stream through the batcher: at most two batches of frames are held in memory.
                for vf in sample_frames(item, cfg):
                    rows.append(np.zeros(dim, dtype=np.float32))
                    batcher.add(vf.rgb, rows[-1], (slice(None),))
                    index.append(vf.index)
                    times.append(vf.time_s - offset_s)
                pending.append((item, rows, index, times))
            batcher.finish()
        return [FeatureArray(video_id=item.video_id, kind="frame",
                             values=np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32),
                             frame=np.asarray(index, dtype=np.int64),
                             time_s=np.asarray(times, dtype=np.float64),
                             attrs={**self._value_attrs(), "sampling": sampling_attrs(cfg)})
                for item, rows, index, times in pending]
