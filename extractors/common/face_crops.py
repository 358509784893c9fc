"""Face crops computed in memory from stored ``face`` boxes: geometry, multi-face averaging, frame matching.

A crop is the box grown by ``margin`` × its size on every side, optionally made square around the box
centre (the longer side wins), and cut from the frame; parts outside the frame are black, so the crop keeps
its shape and centre at image borders. Boxes are normalised, so crops can be cut from frames decoded at
another size than the one the detector saw.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.media.frame_sampling import resample_frames

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy.typing as npt

    from affectcache.extractors.core.records import FeatureArray, MediaItem
    from affectcache.extractors.media.video import VideoFrame
    from affectcache.extractors.visual.face import FaceLayout

logger = logging.getLogger(__name__)


def crop_box(rgb: npt.NDArray[np.uint8], box: npt.NDArray[Any] | tuple[float, float, float, float], *,
             margin: float, square: bool) -> npt.NDArray[np.uint8]:
    """Cut the normalised box ``(x, y, w, h)`` out of an ``(H, W, 3)`` frame (see the module docstring)."""
    height, width = rgb.shape[:2]
    x, y, w, h = (float(v) for v in box)
    cx, cy = (x + w / 2) * width, (y + h / 2) * height
    bw, bh = w * width * (1 + 2 * margin), h * height * (1 + 2 * margin)
    if square:
        bw = bh = max(bw, bh)
    cw, ch = max(1, round(bw)), max(1, round(bh))
    x0, y0 = round(cx - cw / 2), round(cy - ch / 2)
    out = np.zeros((ch, cw, 3), dtype=np.uint8)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(width, x0 + cw), min(height, y0 + ch)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


def average_crops(crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """SCD's multi-face crop: every crop resized (area filter) to the first's size, pixel-averaged."""
    if len(crops) == 1:
        return crops[0]
    from PIL import Image

    h, w = crops[0].shape[:2]
    stack = [crops[0].astype(np.float32)]
    for crop in crops[1:]:
        resized = Image.fromarray(crop).resize((w, h), Image.Resampling.BOX)
        stack.append(np.asarray(resized, dtype=np.float32))
    return np.asarray(np.clip(np.rint(np.mean(stack, axis=0)), 0, 255), dtype=np.uint8)


def face_row_frames(item: MediaItem, face: FeatureArray, max_side: int) -> Iterator[tuple[int, VideoFrame]]:
    """``(row, frame)`` for the ``face`` rows that have a face, decoding the same frames the detector saw.

    The sampling recorded in the ``face`` attrs selects frames by timestamp only, so the indices match
    whatever ``max_side`` is; a row whose frame does not come back (a file changed since ``face`` was
    built) is skipped with a warning and stays masked.
    """
    if face.frame is None:
        raise ValueError(f"{item.video_id}: 'face' rows must be frame-keyed")
    wanted = {int(f): r for r, f in enumerate(face.frame) if face.mask is None or face.mask[r]}
    if not wanted:
        return
    for vf in resample_frames(item, dict(face.attrs["sampling"]), max_side):
        row = wanted.pop(vf.index, None)
        if row is not None:
            yield row, vf
        if not wanted:
            return
    logger.warning("%s: %d face rows have no matching decoded frame (was the file changed after `face` was "
                   "built?); they stay masked", item.video_id, len(wanted))


def row_crops(rgb: npt.NDArray[np.uint8], values_row: npt.NDArray[Any], layout: FaceLayout, policy: str, *,
              margin: float, square: bool) -> dict[int, npt.NDArray[np.uint8]]:
    """Crops of one ``face`` row under its policy: ``{0: crop}`` for ``largest``/``average`` (averaged),
    ``{slot: crop}`` per valid slot for ``all``."""
    boxes, valid = layout.boxes(values_row[None, :])
    crops = {s: crop_box(rgb, boxes[0, s], margin=margin, square=square)
             for s in range(layout.slots) if valid[0, s]}
    if not crops or policy == "all":
        return crops
    if policy == "average":
        return {0: average_crops([crops[s] for s in sorted(crops)])}
    return {0: crops[min(crops)]}
