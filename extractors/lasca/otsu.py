"""Otsu's threshold: the split of a set of values that maximises the between-group variance.

LaScA (§3.1) applies it per window to the min-max normalised feature values: features above the
threshold are the window's salient ("active") cues. Histogram-based like ``skimage.filters.threshold_otsu``
(same binning over the value range and the same bin-centre threshold), so results agree with it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def otsu_threshold(values: npt.ArrayLike, *, nbins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape; NaNs are not allowed).

    Values strictly greater than the threshold form the upper group. When all values are equal the
    threshold is that value (so no value is above it). When the values span a range too narrow for
    ``nbins`` distinct float bins (a few subnormal steps, where scikit-image raises), the threshold is
    the minimum: every value above it is in the upper group.

    Args:
        values: The values to split.
        nbins: Histogram bins over ``[min, max]`` of the values.

    Returns:
        The threshold (a bin centre of the histogram).

    Raises:
        ValueError: Empty input, non-finite values, or ``nbins < 2``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("otsu_threshold needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError("otsu_threshold needs finite values")
    if nbins < 2:
        raise ValueError(f"nbins must be >= 2, got {nbins}")
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return lo
    if not np.all(np.diff(np.linspace(lo, hi, nbins + 1)) > 0):
        return lo
    hist, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    hist = hist.astype(np.float64)
    # Class weights and means for every split "bins <= i" vs "bins > i".
    w_low = np.cumsum(hist)
    w_high = np.cumsum(hist[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = np.cumsum(hist * centres) / w_low
        mean_high = (np.cumsum((hist * centres)[::-1]) / w_high[::-1])[::-1]
    between = w_low[:-1] * w_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    return float(centres[int(np.nanargmax(between))])


def salient_mask(values: npt.ArrayLike, *, nbins: int = 256) -> npt.NDArray[np.bool_]:
    """True where a value is above the Otsu threshold of ``values`` (the salient features)."""
    x = np.asarray(values, dtype=np.float64)
    return np.asarray(x > otsu_threshold(x, nbins=nbins))
