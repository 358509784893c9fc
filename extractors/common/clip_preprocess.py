"""CLIP image preprocessing with the per-pixel arithmetic done once per batch.

The HF CLIP image processor (its PIL backend: torchvision, which its fast backend needs, has no working CPU
wheel here) spends ~6 ms per face crop, mostly rescaling and normalising each image on its own in
float64 — several times a tiny model's forward, and enough to starve a GPU. :class:`ClipPreprocessor`
runs the same steps with the processor's own settings — PIL bicubic resize of the shortest edge, centre
crop, ``x * rescale_factor`` in float64 cast to float32, ``(x - mean) / std`` in float32 — but, since a
uint8 pixel has only 256 values, the rescale and normalisation become a per-channel lookup table computed
with exactly that arithmetic: the processor's numbers, bit for bit (tested).
Settings it does not reproduce (a fixed height/width resize, padding, ...) fall back to the processor.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt
    import torch

T = TypeVar("T")

logger = logging.getLogger(__name__)


_POOL_FROM: Final = 8
"""Batches of at least this many images are resized on a thread pool (PIL releases the GIL)."""


@functools.cache
def _resize_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                              thread_name_prefix="affectcache-resize")


def map_images(fn: Callable[[npt.NDArray[np.uint8]], T], images: list[npt.NDArray[np.uint8]]) -> list[T]:
    """``fn`` over ``images``, on a shared thread pool for batches big enough to pay for it (PIL resizes
    release the GIL)."""
    if len(images) >= _POOL_FROM:
        return list(_resize_pool().map(fn, images))
    return [fn(image) for image in images]


def _setting(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return None if value is None else int(value)


class ClipPreprocessor:
    """Callable turning RGB uint8 images of any sizes into the ``(n, 3, H, W)`` float32 pixel values the
    wrapped HF image processor would return."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        size, crop = processor.size, processor.crop_size
        self.shortest_edge = _setting(size, "shortest_edge")
        self.crop = (_setting(crop, "height"), _setting(crop, "width"))
        from PIL import Image  # here, not at the top: the CLI imports every extractor module

        self.resample = Image.Resampling(int(processor.resample))
        self.rescale_factor = float(processor.rescale_factor)
        mean = np.asarray(processor.image_mean, dtype=np.float32)
        std = np.asarray(processor.image_std, dtype=np.float32)
        scaled = (np.arange(256, dtype=np.float64) * self.rescale_factor).astype(np.float32)
        self.table = (scaled[None, :] - mean[:, None]) / std[:, None]
        """``table[c, v]``: the normalised value of channel ``c`` at uint8 value ``v`` (float32)."""
        unsupported = [
            reason for reason, bad in (
                ("resize not by shortest edge", not processor.do_resize or self.shortest_edge is None
                 or any(_setting(size, k) for k in ("height", "width", "longest_edge"))),
                ("no centre crop", not processor.do_center_crop or None in self.crop),
                ("no rescale or normalisation", not (processor.do_rescale and processor.do_normalize)),
                ("padding", bool(getattr(processor, "do_pad", False))),
            ) if bad]
        self.fallback = ", ".join(unsupported)
        if self.fallback:
            logger.info("CLIP preprocessing through the HF processor (%s)", self.fallback)

    def __call__(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        if self.fallback:
            pixels = self.processor(images=images, return_tensors="np")["pixel_values"]
            return np.asarray(pixels, dtype=np.float32)
        planes = self.crops(images)
        out = np.empty((planes.shape[1], 3, *planes.shape[2:]), dtype=np.float32)
        for channel in range(3):
            out[:, channel] = self.table[channel][planes[channel]]
        return out

    def crops(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
        """The resized, centre-cropped images as uint8 channel planes ``(3, n, H, W)``: what
        :meth:`normalise` turns into pixel values (not for fallback settings)."""
        if self.fallback:
            raise ValueError(f"CLIP preprocessing goes through the HF processor here ({self.fallback})")
        resized = map_images(self._resized_crop, images)
        return np.ascontiguousarray(np.stack(resized).transpose(3, 0, 1, 2))  # planes gather faster

    def normalise(self, planes: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` float32 pixel values of :meth:`crops`' planes, on the planes' device: the
        same table lookup as :meth:`__call__` (bit for bit), but a GPU does it after a uint8 copy, 4×
        fewer bytes than float32 pixels, instead of the CPU that feeds it."""
        import torch

        table = torch.from_numpy(self.table).to(planes.device)
        return torch.stack([table[channel][planes[channel].long()] for channel in range(3)], dim=1)

    def _resized_crop(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Shortest edge to ``shortest_edge`` (the longer one truncated, as the processor does), then the
        centre ``crop`` (zero padding where the resized image is smaller)."""
        from PIL import Image

        assert self.shortest_edge is not None
        height, width = image.shape[:2]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        new_h, new_w = (new_long, new_short) if width <= height else (new_short, new_long)
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=self.resample))
        crop_h, crop_w = self.crop
        assert crop_h is not None
        assert crop_w is not None
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        if top >= 0 and left >= 0:
            return resized[top: top + crop_h, left: left + crop_w]
        out = np.zeros((max(crop_h, new_h), max(crop_w, new_w), 3), dtype=np.uint8)
        pad_top, pad_left = -(-(out.shape[0] - new_h) // 2), -(-(out.shape[1] - new_w) // 2)
        out[pad_top: pad_top + new_h, pad_left: pad_left + new_w] = resized
        top, left = (out.shape[0] - crop_h) // 2, (out.shape[1] - crop_w) // 2
        return out[top: top + crop_h, left: left + crop_w]
