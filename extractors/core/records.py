"""The records passed between manifests, extractors and the store.

:class:`MediaItem` is one manifest row (one video, or one clip of a longer file); :class:`FeatureArray`
is what an extractor produces for one item: ``values`` with one row per frame/window/segment and the
row times that key it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

ModalityKind = Literal["frame", "segment", "text", "clip"]
"""How a modality's rows are keyed: ``frame`` rows carry ``frame`` + ``time_s``; ``segment`` and
``text`` rows carry ``start_s`` + ``end_s`` (``text`` values are strings); ``clip`` has one row per item
spanning ``start_s``..``end_s``."""

MODALITY_KINDS: tuple[str, ...] = get_args(ModalityKind)

# Which per-row arrays each kind must (and may only) carry besides ``values`` and ``mask``.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "frame": ("frame", "time_s"),
    "segment": ("start_s", "end_s"),
    "text": ("start_s", "end_s"),
    "clip": ("start_s", "end_s"),
}


@dataclass(frozen=True, kw_only=True)
class MediaItem:
    """One media item to extract from: a whole file, or the ``start_s``..``end_s`` clip of it."""

    video_id: str
    """Key of the item in the store (validated: letters, digits, ``._-``, not starting with ``.``)."""
    path: str
    """Absolute path (or URL PyAV can open) of the media file."""
    start_s: float | None = None
    """Clip start within the file, seconds; None = file start."""
    end_s: float | None = None
    """Clip end within the file, seconds; None = file end."""
    split: str | None = None
    """Dataset split (train/val/test...), if the manifest gives one."""
    subject: str | None = None
    """Speaker/subject id, if known."""
    corpus: str | None = None
    """Corpus name, if known."""
    labels: Mapping[str, Any] = field(default_factory=dict)
    """Any other manifest columns (labels, metadata), as parsed."""

    def source_info(self) -> dict[str, Any]:
        """What identifies the input: path, size and mtime of the file, and the clip bounds.

        Stored with every entry; a later build redoes an entry whose file size/mtime or clip changed.
        """
        info: dict[str, Any] = {"path": self.path, "start_s": self.start_s, "end_s": self.end_s}
        try:
            st = os.stat(self.path)
        except OSError:
            info.update(size=None, mtime=None)
        else:
            info.update(size=int(st.st_size), mtime=float(st.st_mtime))
        return info


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class FeatureArray:
    """One item's features. Rows are frames (``kind="frame"``) or segments/windows (other kinds).

    Checked on construction: equal row counts, finite non-decreasing times (strictly increasing frames),
    finite float values (never NaN/Inf in the store), boolean mask.
    """

    video_id: str
    kind: ModalityKind
    values: npt.NDArray[Any]
    """(n_rows, ...) float16/float32, or (n_rows,) strings for ``text``."""
    frame: npt.NDArray[np.int64] | None = None
    time_s: npt.NDArray[np.float64] | None = None
    start_s: npt.NDArray[np.float64] | None = None
    end_s: npt.NDArray[np.float64] | None = None
    mask: npt.NDArray[np.bool_] | None = None
    """Row validity (face found, not silence, ...); None = every row valid."""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    """Extra JSON-serialisable per-item facts (e.g. the fps actually sampled). A ``warning`` key (text)
    marks a usable but suspicious item (e.g. no face in any frame): ``affectcache status`` lists it."""

    def __post_init__(self) -> None:
        if self.kind not in ROW_KEYS:
            raise ValueError(f"{self.video_id}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}")
        values = np.asarray(self.values)
        if values.ndim == 0:
            raise ValueError(f"{self.video_id}: values must have a row axis, got a scalar")
        n = values.shape[0]
        if self.kind == "text":
            if values.ndim != 1 or values.dtype.kind not in "UTO":
                raise ValueError(f"{self.video_id}: text values must be a 1-D string array, "
                                 f"got {values.dtype}")
            values = values.astype(np.dtypes.StringDType())
        else:
            if values.dtype.kind not in "fiub":
                raise ValueError(f"{self.video_id}: values must be numeric, got dtype {values.dtype}")
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                bad = int((~np.isfinite(values)).sum())
                raise ValueError(f"{self.video_id}: values contain {bad} NaN/Inf entries; extractors must "
                                 "write finite numbers (mask invalid rows instead)")
        object.__setattr__(self, "values", values)
        required = ROW_KEYS[self.kind]
        for key in ("frame", "time_s", "start_s", "end_s"):
            arr = getattr(self, key)
            if key in required and arr is None:
                raise ValueError(f"{self.video_id}: {self.kind} rows need {required}, {key} is missing")
            if key not in required and arr is not None:
                raise ValueError(f"{self.video_id}: {self.kind} rows carry only {required}, not {key}")
            if arr is None:
                continue
            dtype = np.int64 if key == "frame" else np.float64
            arr = np.asarray(arr, dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(f"{self.video_id}: {key} has shape {arr.shape}, expected ({n},)")
            if dtype is np.float64 and not np.isfinite(arr).all():
                raise ValueError(f"{self.video_id}: {key} contains NaN/Inf")
            object.__setattr__(self, key, arr)
        if self.frame is not None and n > 1 and not (np.diff(self.frame) > 0).all():
            raise ValueError(f"{self.video_id}: frame indices must be strictly increasing")
        for key in ("time_s", "start_s"):
            arr = getattr(self, key)
            if arr is not None and n > 1 and not (np.diff(arr) >= 0).all():
                raise ValueError(f"{self.video_id}: {key} must be non-decreasing")
        if self.start_s is not None and self.end_s is not None and not (self.end_s >= self.start_s).all():
            raise ValueError(f"{self.video_id}: every end_s must be >= its start_s")
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.dtype != np.bool_ or mask.shape != (n,):
                raise ValueError(f"{self.video_id}: mask must be bool of shape ({n},), "
                                 f"got {mask.dtype} {mask.shape}")
            object.__setattr__(self, "mask", mask)

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        # A summary, not the arrays: entries hold thousands of rows.
        first = self.time_s if self.time_s is not None else self.start_s
        last = self.time_s if self.time_s is not None else self.end_s
        span = (f"{float(first.min()):.3f}..{float(last.max()):.3f} s"
                if first is not None and last is not None and self.n_rows else "no rows")
        masked = 0 if self.mask is None else int((~self.mask).sum())
        return (f"FeatureArray({self.video_id!r}, kind={self.kind!r}, n_rows={self.n_rows}, "
                f"values={tuple(self.values.shape)} {self.values.dtype}, {span}, masked={masked}, "
                f"attrs={sorted(self.attrs)})")

    def row_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The per-row arrays present (``values``, times, ``mask``), keyed by their store names."""
        out: dict[str, npt.NDArray[Any]] = {"values": self.values}
        for key in (*ROW_KEYS[self.kind], "mask"):
            arr = getattr(self, key)
            if arr is not None:
                out[key] = arr
        return out

    def allclose(self, other: FeatureArray, *, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
        """Same item, kind, times and mask, and values equal within tolerance (exact for text)."""
        if (self.video_id, self.kind, self.values.shape) != (other.video_id, other.kind, other.values.shape):
            return False
        mine, theirs = self.row_arrays(), other.row_arrays()
        if mine.keys() != theirs.keys():
            return False
        for key, arr in mine.items():
            if key == "values" and self.kind != "text":
                if not np.allclose(arr.astype(np.float64), theirs[key].astype(np.float64),
                                   rtol=rtol, atol=atol):
                    return False
            elif not np.array_equal(arr, theirs[key]):
                return False
        return True
