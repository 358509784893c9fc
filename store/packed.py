"""A whole modality in memory: every entry's rows concatenated, indexed by per-entry offsets.

This is what :meth:`FeatureStore.load` returns and what trainers index with no further I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.records import ROW_KEYS, FeatureArray, ModalityKind


@dataclass(frozen=True, kw_only=True, eq=False)
class PackedModality:
    """Rows of several entries of one modality, concatenated in ``video_ids`` order.

    Entry ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``values``, ``mask`` and the kind's row
    arrays (``frame``/``time_s`` for frame modalities, ``start_s``/``end_s`` otherwise).
    """

    modality: str
    """Name of the modality in the store (``labels/<track>`` for label tracks)."""

    kind: ModalityKind
    """How rows are keyed (see :data:`affectcache.extractors.core.records.ModalityKind`)."""

    video_ids: tuple[str, ...]
    """Entry ids, in row order."""

    offsets: npt.NDArray[np.int64]
    """(n_entries + 1,) row offsets: entry ``i`` is rows ``offsets[i]:offsets[i+1]``."""

    values: npt.NDArray[Any]
    """(n_rows, ...) values as stored (float16/float32; strings for text modalities)."""

    mask: npt.NDArray[np.bool_]
    """(n_rows,) row validity; all True for entries stored without a mask."""

    row_arrays: Mapping[str, npt.NDArray[Any]]
    """The kind's per-row key arrays, each (n_rows,): ``frame`` (int64) + ``time_s`` or
    ``start_s`` + ``end_s`` (float64)."""

    entry_attrs: tuple[Mapping[str, Any], ...] = ()
    """Per-entry attrs the extractor wrote (e.g. the fps sampled, a ``warning``), in ``video_ids`` order."""

    provenance: Mapping[str, Any] = field(default_factory=dict)
    """The modality's provenance (extractor, version, config, fingerprint, model, libraries)."""

    def __post_init__(self) -> None:
        n_entries = len(self.video_ids)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if offsets.shape != (n_entries + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(f"{self.modality}: offsets must be ({n_entries + 1},) non-decreasing from 0")
        n_rows = int(offsets[-1])
        if self.values.shape[0] != n_rows or self.mask.shape != (n_rows,):
            raise ValueError(f"{self.modality}: values/mask must have {n_rows} rows")
        if set(self.row_arrays) != set(ROW_KEYS[self.kind]):
            raise ValueError(f"{self.modality}: {self.kind} rows carry {ROW_KEYS[self.kind]}, "
                             f"got {sorted(self.row_arrays)}")
        for key, arr in self.row_arrays.items():
            if arr.shape != (n_rows,):
                raise ValueError(f"{self.modality}: {key} must have shape ({n_rows},)")
        if self.entry_attrs and len(self.entry_attrs) != n_entries:
            raise ValueError(f"{self.modality}: entry_attrs must have one mapping per entry")
        object.__setattr__(self, "offsets", offsets)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._positions

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {vid: i for i, vid in enumerate(self.video_ids)}

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def rows(self, video_id: str) -> slice:
        """The row slice of one entry (KeyError naming the id if it is not loaded)."""
        try:
            i = self._positions[video_id]
        except KeyError:
            raise KeyError(f"{self.modality}: entry {video_id!r} is not loaded") from None
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def entry(self, video_id: str) -> FeatureArray:
        """One entry as a :class:`FeatureArray` (views into the packed arrays, no copy of values)."""
        sl = self.rows(video_id)
        attrs = self.entry_attrs[self._positions[video_id]] if self.entry_attrs else {}
        return FeatureArray(video_id=video_id, kind=self.kind, values=self.values[sl], mask=self.mask[sl],
                            attrs=attrs, **{k: v[sl] for k, v in self.row_arrays.items()})

    def entries(self) -> Iterator[FeatureArray]:
        """Every entry, in ``video_ids`` order."""
        for vid in self.video_ids:
            yield self.entry(vid)

    @classmethod
    def from_entries(cls, modality: str, kind: ModalityKind, entries: Sequence[FeatureArray], *,
                     provenance: Mapping[str, Any] | None = None,
                     feature_shape: tuple[int, ...] | None = None,
                     dtype: npt.DTypeLike | None = None) -> PackedModality:
        """Concatenate entries (in the given order). ``feature_shape``/``dtype`` shape an empty result."""
        lengths = np.array([e.n_rows for e in entries], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if entries:
            values = np.concatenate([e.values for e in entries])
        else:
            values = np.empty((0, *(feature_shape or ())), dtype=dtype or np.float32)
        mask = (np.concatenate([e.mask if e.mask is not None else np.ones(e.n_rows, bool) for e in entries])
                if entries else np.empty(0, dtype=bool))
        row_arrays: dict[str, npt.NDArray[Any]] = {}
        for key in ROW_KEYS[kind]:
            dt = np.int64 if key == "frame" else np.float64
            parts = [np.asarray(getattr(e, key), dtype=dt) for e in entries]
            row_arrays[key] = np.concatenate(parts) if parts else np.empty(0, dtype=dt)
        return cls(modality=modality, kind=kind, video_ids=tuple(e.video_id for e in entries),
                   offsets=offsets, values=values, mask=mask, row_arrays=row_arrays,
                   entry_attrs=tuple(dict(e.attrs) for e in entries), provenance=dict(provenance or {}))
