"""Small shared pieces of the MediaPipe Tasks API use: task options from a model file, images, frame sizes.

MediaPipe is imported inside the functions (it takes about 1.5 s), so importing this module is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.media import probe

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


def decode_size(path: str, max_side: int) -> tuple[int, int] | None:
    """``(width, height)`` to decode ``path`` at so the longer side is at most ``max_side`` (None = as is).

    Sizes are even: swscale and most decoders prefer them, and it keeps results stable across builds.
    """
    info = probe(path)
    if not info.width or not info.height or max(info.width, info.height) <= max_side:
        return None
    scale = max_side / max(info.width, info.height)
    return max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2)
