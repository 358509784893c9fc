"""``face``: face boxes per sampled video frame (MediaPipe BlazeFace), optionally with the 478-point mesh.

Frames are sampled by :mod:`affectcache.extractors.media.frame_sampling` (a rate, ``n_frames`` uniform
frames as SCD, or every frame) and each is run through MediaPipe's FaceDetector in IMAGE mode, so a frame's
result never depends on the frames before it (and so not on how items are batched). Rows are the sampled
frames; ``mask`` is false where no face was kept.

Values layout (float32; also stored in the entry attrs as ``layout``, read it with :class:`FaceLayout`)::

    col 0                      n_faces: faces the detector reported in the frame (before the policy)
    then ``slots`` blocks of 6  x, y, w, h (box, normalised to the frame: 0..1), score, valid (0/1)
    then, with ``landmarks``,  ``slots`` blocks of 478 x 2 normalised mesh points (x0, y0, x1, y1, ...)

Multi-face policy (``policy``):

- ``largest`` (default): one slot, the largest face.
- ``average`` (SCD): faces whose area is at least ``min_area_ratio`` × the largest, largest first, up to
  ``max_faces`` slots; crop consumers pixel-average them.
- ``all``: one slot per *track*: slot ``k`` holds the face of per-video track ``k`` (a face joins the track
  whose last box overlaps it most, IoU >= ``track_iou``, else opens the next track; faces beyond
  ``max_faces`` tracks are dropped and counted in the attrs). A fixed slot axis keeps ``frame`` strictly
  increasing (one row per frame) while every face keeps a stable column.

A video with no face at all is not an error: every row is masked and the entry attrs say
``no_face: true`` (see :func:`affectcache.store.faces.videos_without_face`).

The models are the pinned assets ``face_detector.tflite`` and, for landmarks, ``face_landmarker.task``
(``affectcache assets fetch NAME``); their sha256 is the model identity in provenance.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from affectcache.extractors.common.assets import AssetError, asset_path, fetch_asset, get_asset
from affectcache.extractors.common.mediapipe_tasks import base_options, mp_image
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.media.frame_sampling import (
    FrameSamplingConfig,
    sample_frames,
    sampling_attrs,
    sampling_needs,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from affectcache.extractors.media.decode_memo import MediaNeeds

logger = logging.getLogger(__name__)

N_LANDMARKS = 478
"""Points of MediaPipe's refined FaceMesh (468 + 10 iris points)."""

SLOT_FIELDS: tuple[str, ...] = ("x", "y", "w", "h", "score", "valid")
"""Columns of one face slot, in order."""

FacePolicy = Literal["largest", "average", "all"]


@dataclass(frozen=True)
class Detection:
    """One detected face: box normalised to the frame (top-left ``x, y``, size ``w, h``) and score."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def area(self) -> float:
        """Box area (normalised units)."""
        return self.w * self.h


class FrameFaces(Protocol):
    """Detects faces (and optionally meshes) on single RGB frames; stateless between calls."""

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        """Every face the detector reports on the frame."""
        ...

    def landmarks(self, rgb: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        """``(478, 2)`` normalised mesh points of every face the landmarker finds."""
        ...


class FaceEngine(Protocol):
    """Opens a :class:`FrameFaces` for one item (closed when the item is done)."""

    def open(self) -> contextlib.AbstractContextManager[FrameFaces]:
        """A detector session; MediaPipe graphs are created here and closed on exit."""
        ...


@dataclass(frozen=True)
class FaceLayout:
    """Column layout of ``face`` values (see the module docstring)."""

    slots: int
    """Face slots per row."""
    landmarks: bool
    """Whether mesh points follow the slot blocks."""

    @property
    def width(self) -> int:
        """Number of value columns."""
        return 1 + self.slots * len(SLOT_FIELDS) + (self.slots * N_LANDMARKS * 2 if self.landmarks else 0)

    def slot_offset(self, slot: int) -> int:
        """First column of ``slot``'s box block."""
        return 1 + slot * len(SLOT_FIELDS)

    def landmark_offset(self, slot: int) -> int:
        """First column of ``slot``'s mesh points."""
        return 1 + self.slots * len(SLOT_FIELDS) + slot * N_LANDMARKS * 2

    def to_attrs(self) -> dict[str, Any]:
        """JSON description stored in the entry attrs."""
        return {"slots": self.slots, "landmarks": self.landmarks, "n_faces_column": 0,
                "slot_fields": list(SLOT_FIELDS), "slot_offset": 1, "slot_width": len(SLOT_FIELDS),
                "landmark_offset": self.landmark_offset(0) if self.landmarks else None,
                "landmark_points": N_LANDMARKS if self.landmarks else 0}

    def column_names(self) -> tuple[str, ...]:
        """``n_faces``, then ``face0_x`` ... ``face0_valid`` per slot, then ``face0_lm0_x``, ... with mesh."""
        names = ["n_faces"] + [f"face{k}_{f}" for k in range(self.slots) for f in SLOT_FIELDS]
        if self.landmarks:
            names += [f"face{k}_lm{p}_{axis}" for k in range(self.slots) for p in range(N_LANDMARKS)
                      for axis in "xy"]
        return tuple(names)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> FaceLayout:
        """The layout recorded in a ``face`` entry's attrs."""
        layout = attrs["layout"]
        return cls(slots=int(layout["slots"]), landmarks=bool(layout["landmarks"]))

    def boxes(self, values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """``(n, slots, 4)`` boxes and ``(n, slots)`` validity of ``face`` values."""
        n = values.shape[0]
        block = np.asarray(values[:, 1: 1 + self.slots * len(SLOT_FIELDS)], dtype=np.float32)
        block = block.reshape(n, self.slots, len(SLOT_FIELDS))
        return block[..., :4], block[..., 5] > 0.5


@dataclass(frozen=True, kw_only=True)
class FaceConfig(FrameSamplingConfig):
    """Settings of the ``face`` extractor. Defaults: 5 fps, largest face, detector score >= 0.5."""

    policy: FacePolicy = "largest"
    """Which faces a row keeps: ``largest``, ``average`` (SCD: all faces with area >= min_area_ratio × the
    largest) or ``all`` (one slot per per-video track)."""

    max_faces: int = 4
    """Face slots per row for the ``average`` and ``all`` policies (``largest`` always has one)."""

    min_area_ratio: float = 0.3
    """``average``: keep faces whose box area is at least this fraction of the largest (SCD: 0.3)."""

    track_iou: float = 0.3
    """``all``: minimum box overlap (IoU) with a track's last box for a face to continue that track."""

    min_detection_confidence: float = 0.5
    """MediaPipe FaceDetector minimum score for a face to be reported."""

    min_suppression_threshold: float = 0.3
    """MediaPipe FaceDetector non-maximum-suppression overlap threshold."""

    landmarks: bool = False
    """Also store the 478 FaceMesh points per slot (FaceLandmarker; about 4× slower than detection)."""

    detector_asset: str = "face_detector.tflite"
    """Registered model asset of the BlazeFace detector, see ``affectcache assets``."""

    landmarker_asset: str = "face_landmarker.task"
    """Registered model asset of the FaceLandmarker bundle (used only with ``landmarks``)."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.max_faces < 1:
            problems.append(f"max_faces must be >= 1, got {self.max_faces}")
        for name in ("min_area_ratio", "track_iou", "min_detection_confidence", "min_suppression_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {value}")
        for name in (self.detector_asset, self.landmarker_asset):
            try:
                get_asset(name)
            except AssetError as exc:
                problems.append(str(exc))
        return problems

    @property
    def layout(self) -> FaceLayout:
        """The values layout this config writes."""
        return FaceLayout(slots=1 if self.policy == "largest" else self.max_faces, landmarks=self.landmarks)


class MediaPipeFaceEngine:
    """The real engine: MediaPipe FaceDetector (and FaceLandmarker) in IMAGE mode.

    Graphs are created per item (about 0.04 s) and closed when it is done: MediaPipe's own finaliser
    fails if a graph is still open at interpreter shutdown.
    """

    def __init__(self, config: FaceConfig) -> None:
        self._config = config
        self._detector_path = asset_path(config.detector_asset)
        self._landmarker_path = asset_path(config.landmarker_asset) if config.landmarks else None

    @contextlib.contextmanager
    def open(self) -> Iterator[FrameFaces]:
        from mediapipe.tasks.python import vision  # type: ignore[import-untyped,unused-ignore]

        cfg = self._config
        with contextlib.ExitStack() as stack:
            options = vision.FaceDetectorOptions(
                base_options=base_options(self._detector_path), running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=cfg.min_detection_confidence,
                min_suppression_threshold=cfg.min_suppression_threshold)
            detector = stack.enter_context(vision.FaceDetector.create_from_options(options))
            landmarker = None
            if self._landmarker_path is not None:
                landmarker = stack.enter_context(vision.FaceLandmarker.create_from_options(
                    vision.FaceLandmarkerOptions(
                        base_options=base_options(self._landmarker_path),
                        running_mode=vision.RunningMode.IMAGE, num_faces=cfg.layout.slots,
                        min_face_detection_confidence=cfg.min_detection_confidence)))
            yield _MediaPipeFrameFaces(detector, landmarker)


class _MediaPipeFrameFaces:
    def __init__(self, detector: Any, landmarker: Any) -> None:
        self._detector = detector
        self._landmarker = landmarker

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        h, w = rgb.shape[:2]
        out = []
        for det in self._detector.detect(mp_image(rgb)).detections:
            box = det.bounding_box
            x0, y0 = max(0.0, box.origin_x / w), max(0.0, box.origin_y / h)
            x1 = min(1.0, (box.origin_x + box.width) / w)
            y1 = min(1.0, (box.origin_y + box.height) / h)
            if x1 > x0 and y1 > y0:
                out.append(Detection(x0, y0, x1 - x0, y1 - y0, float(det.categories[0].score)))
        return out

    def landmarks(self, rgb: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        if self._landmarker is None:
            raise RuntimeError("this engine was created without landmarks")
        result = self._landmarker.detect(mp_image(rgb))
        return [np.asarray([(p.x, p.y) for p in face], dtype=np.float32) for face in result.face_landmarks]


def iou(a: Detection, b: Detection) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Per-video track assignment for the ``all`` policy: greedy by overlap with each track's last box."""

    def __init__(self, max_tracks: int, min_iou: float) -> None:
        self.max_tracks = max_tracks
        self.min_iou = min_iou
        self.last: list[Detection] = []
        self.dropped = 0

    def assign(self, faces: Sequence[Detection]) -> dict[int, Detection]:
        """Slot (track id) of each face of one frame; faces that fit no track and no new slot are dropped."""
        pairs = sorted(((iou(f, t), i, k) for i, f in enumerate(faces) for k, t in enumerate(self.last)),
                       reverse=True)
        slots: dict[int, Detection] = {}
        taken: set[int] = set()
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if i in taken or k in slots:
                continue
            slots[k] = faces[i]
            taken.add(i)
        # New tracks open in order of size, so the bigger face gets the lower id.
        for i in sorted(set(range(len(faces))) - taken, key=lambda j: -faces[j].area):
            if len(self.last) >= self.max_tracks:
                self.dropped += 1
                continue
            self.last.append(faces[i])
            slots[len(self.last) - 1] = faces[i]
        for k, face in slots.items():
            self.last[k] = face
        return slots


def select_faces(faces: Sequence[Detection], config: FaceConfig,
                 tracker: FaceTracker | None) -> dict[int, Detection]:
    """Slot -> face of one frame under the config's policy."""
    if not faces:
        return {}
    by_size = sorted(faces, key=lambda f: (-f.area, f.x, f.y))
    if config.policy == "largest":
        return {0: by_size[0]}
    if config.policy == "average":
        floor = config.min_area_ratio * by_size[0].area
        kept = [f for f in by_size if f.area >= floor][: config.max_faces]
        return dict(enumerate(kept))
    if tracker is None:
        raise ValueError("the 'all' policy needs a tracker")
    return tracker.assign(by_size)


def _match_landmarks(points: list[npt.NDArray[np.float32]],
                     slots: dict[int, Detection]) -> dict[int, npt.NDArray[np.float32]]:
    """Give each slot the mesh whose point bounding box overlaps its box most (IoU > 0.1)."""
    out: dict[int, npt.NDArray[np.float32]] = {}
    used: set[int] = set()
    for slot, face in sorted(slots.items()):
        best, best_iou = -1, 0.1
        for j, pts in enumerate(points):
            if j in used:
                continue
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            overlap = iou(face, Detection(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]),
                                          float(hi[1] - lo[1]), 1.0))
            if overlap > best_iou:
                best, best_iou = j, overlap
        if best >= 0:
            used.add(best)
            out[slot] = np.clip(points[best], 0.0, 1.0)
    return out


@register_extractor
class FaceExtractor(Extractor[FaceConfig]):
    """Face boxes (and optionally meshes) per sampled frame, masked where no face is kept."""

    name = "face"
    version = "1"
    modality_kind = "frame"
    config_type = FaceConfig
    libraries = ("mediapipe",)
    summary = "MediaPipe BlazeFace boxes + scores (+ 478-point mesh) per sampled frame; multi-face policies"

    def feature_names(self) -> tuple[str, ...]:
        """The columns of the config's layout (see :meth:`FaceLayout.column_names`)."""
        return self.config.layout.column_names()

    def __init__(self, config: FaceConfig | None = None, *, engine: FaceEngine | None = None) -> None:
        super().__init__(config)
        self._engine = engine

    @classmethod
    def demo_config(cls, workdir: Path) -> FaceConfig | None:
        config = FaceConfig(fps=2.0, max_side=320)
        try:
            fetch_asset(config.detector_asset)
        except AssetError as exc:
            logger.warning("face left out of the demo: %s", exc)
            return None
        return config

    def model_info(self) -> dict[str, Any]:
        cfg = self.config
        assets = [cfg.detector_asset] + ([cfg.landmarker_asset] if cfg.landmarks else [])
        return {"id": "mediapipe:" + "+".join(assets), "revision": None,
                "sha256": "+".join(get_asset(a).sha256 for a in assets)}

    def media_needs(self) -> MediaNeeds:
        return sampling_needs(self.config)

    def _load(self) -> FaceEngine:
        if self._engine is not None:
            return self._engine
        return MediaPipeFaceEngine(self.config)

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        cfg = self.config
        engine: FaceEngine = self.model
        layout = cfg.layout
        tracker = FaceTracker(cfg.max_faces, cfg.track_iou) if cfg.policy == "all" else None
        offset_s = item.start_s or 0.0
        rows: list[npt.NDArray[np.float32]] = []
        frames: list[int] = []
        times: list[float] = []
        frame_size: list[int] | None = None
        with engine.open() as faces_on:
            for vf in sample_frames(item, cfg):
                frame_size = [int(vf.rgb.shape[1]), int(vf.rgb.shape[0])]
                rows.append(self._row(faces_on, vf.rgb, tracker))
                frames.append(vf.index)
                times.append(vf.time_s - offset_s)
        values = np.stack(rows) if rows else np.zeros((0, layout.width), dtype=np.float32)
        _, valid = layout.boxes(values)
        mask = np.asarray(valid.any(axis=1), dtype=bool)
        found = int(mask.sum())
        warning = {} if found else {"warning": f"no face found in any of {len(rows)} sampled frames"}
        if not found:
            logger.info("face: no face in %s (%d frames sampled)", item.video_id, len(rows))
        return FeatureArray(
            video_id=item.video_id, kind="frame", values=values, frame=np.asarray(frames, dtype=np.int64),
            time_s=np.asarray(times, dtype=np.float64), mask=mask,
            attrs={"layout": layout.to_attrs(), "policy": cfg.policy, "sampling": sampling_attrs(cfg),
                   "offset_s": offset_s, "frame_size": frame_size, "faces_found": found,
                   "no_face": found == 0, "faces_dropped": tracker.dropped if tracker else 0,
                   **warning})

    def _row(self, faces_on: FrameFaces, rgb: npt.NDArray[np.uint8],
             tracker: FaceTracker | None) -> npt.NDArray[np.float32]:
        """One frame's values (see the module docstring for the layout)."""
        cfg = self.config
        layout = cfg.layout
        faces = faces_on.detect(rgb)
        slots = select_faces(faces, cfg, tracker)
        row = np.zeros(layout.width, dtype=np.float32)
        row[0] = len(faces)
        for slot, face in slots.items():
            at = layout.slot_offset(slot)
            row[at: at + len(SLOT_FIELDS)] = (face.x, face.y, face.w, face.h, face.score, 1.0)
        if cfg.landmarks and slots:
            for slot, pts in _match_landmarks(faces_on.landmarks(rgb), slots).items():
                at = layout.landmark_offset(slot)
                row[at: at + N_LANDMARKS * 2] = pts.reshape(-1)
        return row
