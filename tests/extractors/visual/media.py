"""Synthetic videos with a real face photo (scikit-image's astronaut) composited at known positions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

SIZE = (384, 288)
"""(width, height) of the face videos."""
FPS = 10.0
DURATION_S = 3.0
FACE_FROM_S = 1.0
"""No face before this time; the face is in every frame from then on."""
_PATCH_BOX = (120, 30, 330, 230)
"""(left, top, right, bottom) of the astronaut image cut as the patch; the face sits inside it."""
_FACE_IN_IMAGE = (177, 82, 95, 95)
"""The face box MediaPipe reports on the whole astronaut image (stack.md §4), x, y, w, h."""


def _patch() -> npt.NDArray[np.uint8]:
    from skimage import data

    left, top, right, bottom = _PATCH_BOX
    return np.ascontiguousarray(data.astronaut()[top:bottom, left:right])


def patch_offset(t: float) -> tuple[int, int]:
    """Top-left corner of the patch at time ``t`` (it slides right by 20 px/s)."""
    return 20 + round(20 * (t - FACE_FROM_S)), 40


def face_centre(t: float) -> tuple[float, float]:
    """Expected normalised face centre at time ``t`` (from the box on the whole photo)."""
    ox, oy = patch_offset(t)
    fx, fy, fw, fh = _FACE_IN_IMAGE
    return ((ox + fx - _PATCH_BOX[0] + fw / 2) / SIZE[0], (oy + fy - _PATCH_BOX[1] + fh / 2) / SIZE[1])


def write_face_video(path: Path, *, second_face: bool = False) -> Path:
    """A clip with a grey background; the astronaut's face from ``FACE_FROM_S`` on (sliding slowly) and,
    with ``second_face``, a half-size copy standing still on the right."""
    from PIL import Image

    from affectcache.extractors.testing.synthetic import write_clip

    patch = _patch()
    small = np.asarray(Image.fromarray(patch).resize((patch.shape[1] // 2, patch.shape[0] // 2)))

    def frame(i: int, t: float) -> npt.NDArray[np.uint8]:
        img = np.full((SIZE[1], SIZE[0], 3), 110, dtype=np.uint8)
        if t >= FACE_FROM_S - 1e-9:
            ox, oy = patch_offset(t)
            img[oy: oy + patch.shape[0], ox: ox + patch.shape[1]] = patch
            if second_face:
                img[150: 150 + small.shape[0], 270: 270 + small.shape[1]] = small
        return img

    return write_clip(path, duration_s=DURATION_S, fps=FPS, size=SIZE, frame_fn=frame)
