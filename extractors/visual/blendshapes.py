"""``blendshapes``: MediaPipe FaceLandmarker's 52 facial blendshape scores per sampled video frame.

Frames are decoded with :func:`affectcache.extractors.media.video.iter_frames` at ``fps`` (downscaled so the
longer side is at most ``max_side``) and fed to a FaceLandmarker in VIDEO running mode, one landmarker
per item so timestamps restart at every video and always increase within it (MediaPipe tracks the face
between frames in this mode). Rows are the sampled frames: ``frame`` is the source frame index,
``time_s`` its time from the item start. ``values`` are the 52 scores in [0, 1], in MediaPipe's category
order (index 0 is ``_neutral``; the names are in the entry attrs as ``categories``); ``mask`` is false
where no face was found, and those rows are 0.

The model is the pinned ``face_landmarker.task`` asset (``affectcache assets fetch face_landmarker.task``);
its sha256 is the model identity in provenance. The engine sits behind :class:`BlendshapeEngine`, so tests
and other backends can supply their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from affectcache.extractors.common.assets import AssetError, asset_path, fetch_asset, get_asset
from affectcache.extractors.common.mediapipe_tasks import base_options, mp_image
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.media.decode_memo import FrameSampling, MediaNeeds
from affectcache.extractors.media.frame_sampling import decode_size
from affectcache.extractors.media.video import iter_frames

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    import numpy.typing as npt

logger = logging.getLogger(__name__)

BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
"""MediaPipe's blendshape categories, in the order the model outputs them (and ``values`` columns)."""


class BlendshapeEngine(Protocol):
    """Scores the frames of one video, in order; a fresh tracking state per call."""

    def score_video(self, frames: Iterable[tuple[npt.NDArray[np.uint8], int]]
                    ) -> Iterator[npt.NDArray[np.float32] | None]:
        """For each ``(rgb frame, timestamp_ms)`` (timestamps strictly increasing), the
        ``len(BLENDSHAPE_NAMES)`` scores of the first face, or None where no face was found."""
        ...


@dataclass(frozen=True, kw_only=True)
class BlendshapesConfig(ExtractorConfig):
    """Settings of the ``blendshapes`` extractor."""

    fps: float = 5.0
    """Frames sampled per second of video (the frame nearest each tick); higher costs proportionally
    more (about 12 ms per frame on one CPU core)."""

    max_side: int = 640
    """Frames whose longer side exceeds this many pixels are downscaled (aspect kept) before detection."""

    min_face_detection_confidence: float = 0.5
    """MediaPipe's minimum face detector score for a face to be reported."""

    min_face_presence_confidence: float = 0.5
    """MediaPipe's minimum landmark-model face presence score."""

    min_tracking_confidence: float = 0.5
    """MediaPipe's minimum tracking score before the detector is rerun (VIDEO mode)."""

    asset: str = "face_landmarker.task"
    """Registered model asset (a FaceLandmarker task bundle with blendshapes), see ``affectcache assets``."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.fps > 0:
            problems.append(f"fps must be > 0, got {self.fps}")
        if self.max_side < 32:
            problems.append(f"max_side must be >= 32 pixels, got {self.max_side}")
        for name in ("min_face_detection_confidence", "min_face_presence_confidence",
                     "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {value}")
        try:
            get_asset(self.asset)
        except AssetError as exc:
            problems.append(str(exc))
        return problems


class MediaPipeBlendshapeEngine:
    """The real engine: MediaPipe Tasks FaceLandmarker in VIDEO mode, one landmarker per video."""

    def __init__(self, model_path: Path, config: BlendshapesConfig) -> None:
        from mediapipe.tasks.python import vision  # type: ignore[import-untyped,unused-ignore]

        self._vision = vision
        self._options = vision.FaceLandmarkerOptions(
            base_options=base_options(model_path),
            running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True,
            min_face_detection_confidence=config.min_face_detection_confidence,
            min_face_presence_confidence=config.min_face_presence_confidence,
            min_tracking_confidence=config.min_tracking_confidence)

    def score_video(self, frames: Iterable[tuple[npt.NDArray[np.uint8], int]]
                    ) -> Iterator[npt.NDArray[np.float32] | None]:
        with self._vision.FaceLandmarker.create_from_options(self._options) as landmarker:
            for rgb, ts_ms in frames:
                result = landmarker.detect_for_video(mp_image(rgb), ts_ms)
                if not result.face_blendshapes:
                    yield None
                    continue
                yield _ordered_scores(result.face_blendshapes[0])


def _ordered_scores(categories: Iterable[Any]) -> npt.NDArray[np.float32]:
    """Scores in :data:`BLENDSHAPE_NAMES` order; refuses a model with other categories."""
    by_name = {c.category_name: float(c.score) for c in categories}
    if set(by_name) != set(BLENDSHAPE_NAMES):
        raise RuntimeError(f"the landmarker model reports categories {sorted(by_name)}, expected "
                           f"MediaPipe's {len(BLENDSHAPE_NAMES)} blendshapes")
    return np.asarray([by_name[n] for n in BLENDSHAPE_NAMES], dtype=np.float32)


@register_extractor
class BlendshapesExtractor(Extractor[BlendshapesConfig]):
    """52 MediaPipe blendshape scores per sampled frame, masked where no face is found."""

    name = "blendshapes"
    version = "1"
    modality_kind = "frame"
    config_type = BlendshapesConfig
    libraries = ("mediapipe",)
    summary = "MediaPipe FaceLandmarker: 52 blendshape scores per sampled frame (LaScA facial features)"

    def feature_names(self) -> tuple[str, ...]:
        """MediaPipe's blendshape categories, in column order."""
        return BLENDSHAPE_NAMES

    def __init__(self, config: BlendshapesConfig | None = None, *,
                 engine: BlendshapeEngine | None = None) -> None:
        super().__init__(config)
        self._engine = engine

    @classmethod
    def demo_config(cls, workdir: Path) -> BlendshapesConfig | None:
        config = BlendshapesConfig()
        try:
            fetch_asset(config.asset)
        except AssetError as exc:
            logger.warning("blendshapes left out of the demo: %s", exc)
            return None
        return config

    def model_info(self) -> dict[str, Any]:
        return {"id": f"mediapipe:{self.config.asset}", "revision": None,
                "sha256": get_asset(self.config.asset).sha256}

    def media_needs(self) -> MediaNeeds:
        return MediaNeeds(frame_samplings=frozenset({FrameSampling(fps=self.config.fps)}))

    def _load(self) -> BlendshapeEngine:
        if self._engine is not None:
            return self._engine
        return MediaPipeBlendshapeEngine(asset_path(self.config.asset), self.config)

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        cfg = self.config
        engine: BlendshapeEngine = self.model
        size = decode_size(item.path, cfg.max_side)
        offset_s = item.start_s or 0.0
        frames: list[int] = []
        times: list[float] = []

        def timed_frames() -> Iterator[tuple[npt.NDArray[np.uint8], int]]:
            last_ms = -1
            for vf in iter_frames(item.path, fps=cfg.fps, size=size, start_s=item.start_s, end_s=item.end_s):
                # VIDEO mode needs strictly increasing integer milliseconds.
                ts_ms = max(round(vf.time_s * 1000.0), last_ms + 1)
                last_ms = ts_ms
                frames.append(vf.index)
                times.append(vf.time_s - offset_s)
                yield vf.rgb, ts_ms

        rows = list(engine.score_video(timed_frames()))
        values = np.zeros((len(rows), len(BLENDSHAPE_NAMES)), dtype=np.float32)
        mask = np.zeros(len(rows), dtype=bool)
        for i, scores in enumerate(rows):
            if scores is not None:
                values[i] = scores
                mask[i] = True
        return FeatureArray(
            video_id=item.video_id, kind="frame", values=values, frame=np.asarray(frames, dtype=np.int64),
            time_s=np.asarray(times, dtype=np.float64), mask=mask,
            attrs={"categories": list(BLENDSHAPE_NAMES), "fps": cfg.fps, "offset_s": offset_s,
                   "frame_size": list(size) if size else None, "faces_found": int(mask.sum())})
