"""``lasca-windows``: LaScA window features x_t — mean-pooled blendshapes and MFCCs, min-max normalised.

Each item is cut into consecutive windows of ``window_s`` (every ``hop_s``; the paper uses 3 s and 5 s
windows back to back) from the item start; only whole windows are kept, except that an item shorter than
one window gives one window over all of it. Within a window the valid rows of the stored ``blendshapes``
(face found) and ``mfcc`` (not silent) modalities are averaged (§4.2), giving the paper's feature vector
``[Face_* (52) | mfcc_k (n_mfcc)]``; a modality with no valid row in a window contributes zeros and the
window's ``mask`` is false.

Normalisation (§3.1) uses per-feature minima and maxima of the pooled features over the **train split
only**, computed beforehand by ``affectcache lasca normalise``
(:func:`affectcache.store.pipelines.lasca.fit_normaliser`)
and saved as a :class:`NormaliserStats` JSON file; the config names the file and pins its content hash,
so the stats are part of the fingerprint and other splits never leak into them. Values are
``clip((x - min) / (max - min), 0, 1)`` (0 where a feature was constant on the train split).

Rows are segments (``start_s``/``end_s`` from the item start); ``values`` (n_windows, 52 + n_mfcc) float32.
Entry attrs: ``features`` (names, in column order), ``face_valid`` and ``audio_valid`` per window.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.atomic import atomic_write_json
from affectcache.extractors.core.base import NO_UPSTREAM, Extractor, Upstream
from affectcache.extractors.core.config import ExtractorConfig, runtime_only
from affectcache.extractors.core.errors import ConfigError, ExtractorError
from affectcache.extractors.core.provenance import stable_hash
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import register_extractor
from affectcache.extractors.lasca.lexicon import FACE_PREFIX, MFCC_PREFIX

if TYPE_CHECKING:
    from collections.abc import Sequence


STATS_FORMAT = "affectcache-lasca-normaliser/1"
UPSTREAM = ("blendshapes", "mfcc")


@dataclass(frozen=True, kw_only=True)
class PooledWindows:
    """Raw (not normalised) window means of one item."""

    start_s: npt.NDArray[np.float64]
    """Window starts, seconds from the item start."""
    end_s: npt.NDArray[np.float64]
    """Window ends."""
    values: npt.NDArray[np.float64]
    """(n_windows, n_features) means of the valid rows; zeros where a modality had none."""
    face_valid: npt.NDArray[np.bool_]
    """Whether a window had at least one frame with a face."""
    audio_valid: npt.NDArray[np.bool_]
    """Whether a window had at least one non-silent MFCC frame."""
    features: tuple[str, ...]
    """Feature names of the columns."""

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """Windows with both modalities present."""
        return self.face_valid & self.audio_valid


def window_bounds(duration_s: float, window_s: float, hop_s: float) -> tuple[npt.NDArray[np.float64],
                                                                           npt.NDArray[np.float64]]:
    """Starts and ends of the whole windows in ``[0, duration_s]`` (one short window if none fits)."""
    if duration_s <= 0:
        return np.zeros(0), np.zeros(0)
    # A tolerance keeps a window that ends exactly at the item end despite float rounding.
    n = math.floor((duration_s - window_s) / hop_s + 1e-6) + 1 if duration_s >= window_s - 1e-6 else 0
    if n <= 0:
        return np.array([0.0]), np.array([float(duration_s)])
    starts = np.arange(n, dtype=np.float64) * hop_s
    return starts, starts + window_s


def feature_names(blendshapes: FeatureArray, mfcc: FeatureArray) -> tuple[str, ...]:
    """Paper-style names of the pooled columns: ``Face_<category>`` then ``mfcc_<k>``."""
    categories = blendshapes.attrs.get("categories")
    if not isinstance(categories, list) or len(categories) != blendshapes.values.shape[1]:
        raise ExtractorError(f"{blendshapes.video_id}: blendshapes entry has no matching 'categories' attr")
    return (*(FACE_PREFIX + str(c) for c in categories),
            *(f"{MFCC_PREFIX}{k}" for k in range(mfcc.values.shape[1])))


def pool_windows(blendshapes: FeatureArray, mfcc: FeatureArray, *, window_s: float,
                 hop_s: float) -> PooledWindows:
    """Mean of the valid blendshape and MFCC rows inside each window of one item."""
    if blendshapes.time_s is None or mfcc.time_s is None:
        raise ExtractorError("pool_windows needs frame-level blendshapes and mfcc")
    ends = [t[-1] for t in (blendshapes.time_s, mfcc.time_s) if t.size]
    duration = float(max(ends)) if ends else 0.0
    if blendshapes.time_s.size > 1:  # the last frame lasts one frame period
        duration = max(duration, float(blendshapes.time_s[-1] + np.median(np.diff(blendshapes.time_s))))
    starts, stops = window_bounds(duration, window_s, hop_s)
    parts, valids = [], []
    for feats, times in ((blendshapes, blendshapes.time_s), (mfcc, mfcc.time_s)):
        ok = np.ones(feats.n_rows, bool) if feats.mask is None else feats.mask
        vals = feats.values.astype(np.float64).reshape(feats.n_rows, -1)
        pooled = np.zeros((len(starts), vals.shape[1]))
        valid = np.zeros(len(starts), bool)
        for i, (a, b) in enumerate(zip(starts, stops, strict=True)):
            rows = ok & (times >= a) & (times < b)
            if rows.any():
                pooled[i] = vals[rows].mean(axis=0)
                valid[i] = True
        parts.append(pooled)
        valids.append(valid)
    return PooledWindows(start_s=starts, end_s=stops, values=np.concatenate(parts, axis=1),
                         face_valid=valids[0], audio_valid=valids[1],
                         features=feature_names(blendshapes, mfcc))


@dataclass(frozen=True, kw_only=True)
class NormaliserStats:
    """Per-feature train-split minima and maxima of the pooled window features."""

    features: tuple[str, ...]
    """Feature names, in column order."""
    minimum: tuple[float, ...]
    """Per-feature minimum over the valid train windows."""
    maximum: tuple[float, ...]
    """Per-feature maximum over the valid train windows."""
    window_s: float
    """Window length the stats were computed with."""
    hop_s: float
    """Window hop the stats were computed with."""
    info: dict[str, Any]
    """Where they come from (store, split, videos, upstream fingerprints, window count); not hashed."""

    @property
    def sha256(self) -> str:
        """Content identity (the numbers and windowing, not ``info``): pin it in the config."""
        return stable_hash({"features": list(self.features), "min": list(self.minimum),
                            "max": list(self.maximum), "window_s": self.window_s, "hop_s": self.hop_s})

    def normalise(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``clip((x - min) / (max - min), 0, 1)``; 0 for features constant on the train split."""
        lo, hi = np.asarray(self.minimum), np.asarray(self.maximum)
        span = hi - lo
        safe = np.where(span > 0, span, 1.0)
        return np.where(span > 0, np.clip((values - lo) / safe, 0.0, 1.0), 0.0)

    def to_json(self) -> dict[str, Any]:
        """File content."""
        return {"format": STATS_FORMAT, "sha256": self.sha256, "features": list(self.features),
                "min": list(self.minimum), "max": list(self.maximum), "window_s": self.window_s,
                "hop_s": self.hop_s, "info": self.info}

    def save(self, path: str | Path) -> Path:
        """Write the JSON file (atomically)."""
        target = Path(path)
        atomic_write_json(target, self.to_json())
        return target

    @classmethod
    def load(cls, path: str | Path) -> NormaliserStats:
        """Read a stats file; :class:`ConfigError` if it is not one or its content hash is wrong."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read normaliser stats {path}: {exc}; compute them with "
                              "`affectcache lasca normalise`") from exc
        if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
            raise ConfigError(f"{path} is not a LaScA normaliser stats file ({STATS_FORMAT})")
        stats = cls(features=tuple(data["features"]), minimum=tuple(float(v) for v in data["min"]),
                    maximum=tuple(float(v) for v in data["max"]), window_s=float(data["window_s"]),
                    hop_s=float(data["hop_s"]), info=dict(data.get("info") or {}))
        if data.get("sha256") != stats.sha256:
            raise ConfigError(f"{path}: content does not match its recorded sha256 (edited by hand?)")
        return stats


def fit_stats(pooled: Sequence[PooledWindows], *, window_s: float, hop_s: float,
              info: dict[str, Any]) -> NormaliserStats:
    """Min-max stats over the valid windows of ``pooled`` (the train split's items)."""
    rows = [p.values[p.valid] for p in pooled]
    stacked = np.concatenate(rows) if rows else np.zeros((0, 0))
    if stacked.shape[0] == 0:
        raise ExtractorError("no valid window (face and sound) in the train items: cannot fit normaliser")
    names = {p.features for p in pooled}
    if len(names) != 1:
        raise ExtractorError("train items disagree on the feature names (mixed blendshape/mfcc configs?)")
    return NormaliserStats(features=names.pop(), minimum=tuple(float(v) for v in stacked.min(axis=0)),
                           maximum=tuple(float(v) for v in stacked.max(axis=0)), window_s=window_s,
                           hop_s=hop_s, info={**info, "n_windows": int(stacked.shape[0])})


@dataclass(frozen=True, kw_only=True)
class LascaWindowsConfig(ExtractorConfig):
    """Settings of the ``lasca-windows`` extractor."""

    window_s: float = 5.0
    """Window length, seconds (paper: 3 or 5)."""

    hop_s: float | None = None
    """Step between window starts, seconds; None = ``window_s`` (consecutive, non-overlapping)."""

    normaliser: str = runtime_only("")
    """Path of the train-split min-max stats (``affectcache lasca normalise``). Only its content counts,
    pinned by ``normaliser_sha256``, so moving the file changes nothing."""

    normaliser_sha256: str = ""
    """Content hash of the normaliser stats (printed by ``affectcache lasca normalise``)."""

    @property
    def hop(self) -> float:
        """The effective hop in seconds."""
        return self.window_s if self.hop_s is None else self.hop_s

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.window_s > 0:
            problems.append(f"window_s must be > 0, got {self.window_s}")
        if self.hop_s is not None and not self.hop_s > 0:
            problems.append(f"hop_s must be > 0 or null, got {self.hop_s}")
        if not self.normaliser or not self.normaliser_sha256:
            problems.append("normaliser and normaliser_sha256 are required: compute train-split stats with "
                            "`affectcache lasca normalise` (it prints both)")
        return problems


@register_extractor
class LascaWindowsExtractor(Extractor[LascaWindowsConfig]):
    """Window-pooled, train-normalised blendshapes + MFCCs (the LaScA feature vector x_t)."""

    name = "lasca-windows"
    version = "1"
    modality_kind = "segment"
    config_type = LascaWindowsConfig
    requires = UPSTREAM
    summary = "LaScA x_t: blendshapes + MFCCs mean-pooled per 3/5 s window, train-split min-max normalised"

    def model_info(self) -> dict[str, Any]:
        return {"id": "lasca-normaliser", "revision": None, "sha256": self.config.normaliser_sha256}

    def _load(self) -> NormaliserStats:
        cfg = self.config
        stats = NormaliserStats.load(cfg.normaliser)
        if stats.sha256 != cfg.normaliser_sha256:
            raise ConfigError(f"normaliser {cfg.normaliser} has sha256 {stats.sha256[:16]}..., the config "
                              f"pins {cfg.normaliser_sha256[:16]}...")
        if not (math.isclose(stats.window_s, cfg.window_s) and math.isclose(stats.hop_s, cfg.hop)):
            raise ConfigError(f"normaliser {cfg.normaliser} was fit on {stats.window_s} s windows every "
                              f"{stats.hop_s} s, the config asks for {cfg.window_s} s every {cfg.hop} s")
        return stats

    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        stats: NormaliserStats = self.model
        pooled = pool_windows(upstream["blendshapes"], upstream["mfcc"], window_s=self.config.window_s,
                              hop_s=self.config.hop)
        if pooled.features != stats.features:
            raise ConfigError(f"{item.video_id}: upstream features ({len(pooled.features)}) differ from the "
                              f"normaliser's ({len(stats.features)}); refit it on this store")
        if not len(pooled.start_s):
            raise ExtractorError(f"{item.video_id}: upstream modalities have no rows")
        values = stats.normalise(pooled.values)
        n_face = sum(f.startswith(FACE_PREFIX) for f in pooled.features)
        values[~pooled.face_valid, :n_face] = 0.0
        values[~pooled.audio_valid, n_face:] = 0.0
        return FeatureArray(video_id=item.video_id, kind="segment", values=values.astype(np.float32),
                            start_s=pooled.start_s, end_s=pooled.end_s, mask=pooled.valid,
                            attrs={"features": list(pooled.features),
                                   "face_valid": pooled.face_valid.tolist(),
                                   "audio_valid": pooled.audio_valid.tolist()})
