"""Small shared pieces of the MediaPipe Tasks API use: task options from a model file, images, frame sizes.

MediaPipe is imported inside the functions (it takes about 1.5 s), so importing this module is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt


def base_options(model_path: Path) -> Any:
    """``BaseOptions`` loading the model file at ``model_path`` (CPU delegate)."""
    from mediapipe.tasks.python import BaseOptions  # type: ignore[import-untyped,unused-ignore]

    return BaseOptions(model_asset_path=str(model_path))


def mp_image(rgb: npt.NDArray[np.uint8]) -> Any:
    """A MediaPipe SRGB image of an ``(h, w, 3)`` uint8 RGB array (copied to C order if needed)."""
    import mediapipe as mp  # type: ignore[import-untyped,unused-ignore]

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

