"""The per-modality catalog: which entries exist, in which fragment rows, as an append-only commit log.

Modelled on the Delta Lake / Iceberg / Lance commit protocol, reduced to what a feature store needs:

- Data is written first, as immutable fragments under fresh names (:mod:`affectcache.store.format.fragments`);
  nothing points at them yet, so a crash leaves only unreferenced files.
- A **commit** is one small JSON record ``<modality>/_log/<generation>/v<version>/zarr.json`` created
  atomically *if absent* (version = previous + 1). Creating it is the commit point: the entries it
  names exist from then on, exactly once. Two committers racing for one version: one wins, the other
  re-reads the log and retries at the next version (optimistic concurrency). A compaction's entries
  carry the rows they expect to replace and apply only if those are still current, so a compaction
  never undoes a concurrent rebuild of an entry.
- Every :data:`CHECKPOINT_EVERY` versions the committer also writes the whole state at that version
  (``c<version>``, columnar JSON); readers load the newest checkpoint and apply the few records after
  it, and records older than the previous checkpoint are trimmed. Failure records ride in the same
  log: recording one appends a record, it never rewrites the others. A checkpoint (format 2) holds no
  failure records: it references immutable parts ``f<version>`` and adds one holding only what changed
  since the previous checkpoint (see :meth:`CatalogState._plan_failure_parts`).
- Records and checkpoints are Zarr groups (the payload is their ``attributes``), so the whole store
  stays a valid Zarr hierarchy for plain tools.

The state (:class:`CatalogState`) maps each video id to its fragment, first row, row count, mask flag,
source facts, extractor attrs and commit time, plus the failure records and the *retired* fragments
(no entry points at them any more: garbage until a vacuum deletes them after a retention time).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import operator
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from affectcache.store.errors import StoreError
from affectcache.store.format.fragments import group_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from affectcache.store.format.fragments import FragmentInfo
    from affectcache.store.kv import Keys

logger = logging.getLogger(__name__)

LOG_GROUP = "_log"
CHECKPOINT_EVERY = 32
"""A checkpoint of the whole state every this many commits: readers apply at most this many records."""
CHECKPOINT_FORMAT = 2
"""Checkpoint format: 2 references failure parts (``f<version>`` nodes); 1 held the records inline."""
MAX_FAILURE_PARTS = 16
"""At most this many failure parts per checkpoint (bounds a fresh reader's requests)."""
CHECKPOINT_ENTRIES = 256
"""A commit naming at least this many entries or failure records (an import, a compaction) is
checkpointed at once, so later commits copy and readers parse only small overlays."""
_RECORD_ATTR = "affectcache_commit"
# Format-2 checkpoints use their own attribute: code that knows only format 1 (failures inline) then
# finds no checkpoint payload and refuses the catalog instead of reading it without its failures.
_CHECKPOINT_ATTR = "affectcache_checkpoint_2"
_CHECKPOINT_ATTR_1 = "affectcache_checkpoint"
_PART_ATTR = "affectcache_failure_part"
_SOURCE_COLUMNS = ("path", "size", "mtime", "start_s", "end_s")
_COMPARED = ("size", "mtime", "start_s", "end_s")  # what decides whether an entry's media changed
_READ_ATTEMPTS = 5


class CatalogEntry(NamedTuple):
    """One committed entry."""

    fragment: str
    """Fragment folder name."""
    start: int
    """First row in the fragment."""
    n_rows: int
    """Rows."""
    has_mask: bool
    """Whether the entry was written with a mask."""
    source: Mapping[str, Any]
    """Source facts recorded at write time."""
    attrs: Mapping[str, Any]
    """Extractor attrs (a ``warning`` key marks a suspicious item)."""
    time: float
    """Commit time (seconds since the epoch)."""


_LAZY_SOURCES: Mapping[str, tuple[str, Any]] = {
    "_frag": ("fragment", np.int64), "_start": ("start", np.int64), "_n": ("n_rows", np.int64),
    "_mask": ("mask", np.bool_), "_time": ("time_s", np.float64)}


class _LazyColumn:
    """A numeric checkpoint column of :class:`CatalogState`, decoded from its packed form on first use."""

    NAMES = ("_frag", "_start", "_n", "_mask", "_time")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: CatalogState | None, owner: type) -> Any:
        if obj is None:
            return self
        key, dtype = _LAZY_SOURCES[self.name]
        column: npt.NDArray[Any] = _unpack(obj._packed_cols[key]).astype(dtype, copy=False)
        obj.__dict__[self.name] = column  # cached: later reads skip the descriptor
        return column


class FailurePart(NamedTuple):
    """One immutable part of a checkpoint's failure records: the changes of a span of versions."""

    version: int | None
    """The checkpoint version that wrote it (its node ``f<version>``); None: inline in a format-1
    checkpoint."""
    size: int
    """Records set or dropped."""
    payload: Mapping[str, Any]
    """``{"set": packed records, "drop": [ids]}``: applied over the earlier parts."""

    def changes(self) -> dict[str, dict[str, Any] | None]:
        """The part as ``{video_id: record, or None for a dropped one}``."""
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(self.payload.get("drop") or ())
        out.update(_unpack_failures(self.payload["set"]))
        return out

    @classmethod
    def build(cls, version: int, changes: Mapping[str, Mapping[str, Any] | None]) -> FailurePart:
        """A part holding ``changes`` (``None`` drops the id's record)."""
        drop = sorted(v for v, r in changes.items() if r is None)
        kept = {v: r for v, r in changes.items() if r is not None}
        return cls(version, len(changes), {"set": _pack_failures(kept), "drop": drop})


class CatalogState:
    """The committed state of one generation of a modality, at ``version``.

    Columnar: the newest checkpoint's entries stay as numpy arrays and lists (parsing one is a JSON
    load, no per-entry objects), with the records applied since as an overlay of changed entries.
    Entries are materialised as :class:`CatalogEntry` only when asked for one by one. A state is never
    mutated once handed out (committing produces a new one), so readers in other threads are safe.
    """

    _frag = _LazyColumn()
    _start = _LazyColumn()
    _n = _LazyColumn()
    _mask = _LazyColumn()
    _time = _LazyColumn()

    def __init__(self) -> None:
        self._packed_cols: Mapping[str, Any] = {}
        self.version = -1
        """Last applied commit (-1: none yet)."""
        self._fail_decoded: dict[str, dict[str, Any]] | None = {}
        self._fail_parts: tuple[FailurePart, ...] = ()
        self._fail_ids: frozenset[str] | None = None
        self.checkpoint_version = -1
        """Version of the checkpoint this state was built from (-1: none)."""
        self._fail_over: dict[str, dict[str, Any] | None] = {}
        self._fail_merged: dict[str, dict[str, Any]] | None = None
        self.fragment_rows: dict[str, int] = {}
        """Rows of every committed fragment not yet purged (live or retired)."""
        self.retired_at: dict[str, float] = {}
        """When a vacuum first found each retired fragment unreferenced (it is deleted a retention
        time later, see :func:`affectcache.store.format.compaction.vacuum`)."""
        self._ids: list[str] = []
        self._frag_names: list[str] = []
        self._frag = np.zeros(0, np.int64)
        self._start = np.zeros(0, np.int64)
        self._n = np.zeros(0, np.int64)
        self._mask = np.zeros(0, bool)
        self._time = np.zeros(0, np.float64)
        self._source_cols: dict[str, list[Any]] | None = {k: [] for k in _SOURCE_COLUMNS}
        self._source_packed: Mapping[str, Any] = {}
        self._source_extra: dict[str, dict[str, Any]] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._pos_cache: dict[str, int] | None = None
        self._facts_cache: list[tuple[Any, ...]] | None = None
        self._facts_map: dict[str, tuple[Any, ...]] | None = None
        self._over: dict[str, CatalogEntry | None] = {}
        self._sorted: list[str] | None = None

    @property
    def _fail_base(self) -> dict[str, dict[str, Any]]:
        # Failure records of the checkpoint's parts, decoded on first use (most commits never need them).
        if self._fail_decoded is None:
            merged: dict[str, dict[str, Any] | None] = {}
            for part in self._fail_parts:
                merged.update(part.changes())
            self._fail_decoded = {v: r for v, r in merged.items() if r is not None}
        return self._fail_decoded

    @property
    def failures(self) -> dict[str, dict[str, Any]]:
        """Per-item failure records: ``{video_id: {error, message, time}}`` (do not modify)."""
        if not self._fail_over:
            return self._fail_base
        if self._fail_merged is None:
            merged = dict(self._fail_base)
            for vid, rec in self._fail_over.items():
                if rec is None:
                    merged.pop(vid, None)
                else:
                    merged[vid] = rec
            self._fail_merged = merged
        return self._fail_merged

    def _drop_failure(self, vid: str) -> None:
        # Unconditionally: checking the checkpoint's records would decode them all.
        if vid not in self._fail_over or self._fail_over[vid] is not None:
            self._fail_over[vid] = None
            self._fail_merged = None

    # ---- entry access -------------------------------------------------------------------------------
    @property
    def _source(self) -> dict[str, list[Any]]:
        # Decoded on first use: listing, status and loads never need the source columns.
        if self._source_cols is None:
            packed = self._source_packed
            cols = {"path": list(packed["source_path"])}
            for key in ("size", "mtime", "start_s", "end_s"):
                cols[key] = _unpack_optional(packed[f"source_{key}"])
            self._source_cols = cols
        return self._source_cols

    @property
    def _pos(self) -> dict[str, int]:
        if self._pos_cache is None:
            self._pos_cache = {v: i for i, v in enumerate(self._ids)}
        return self._pos_cache

    def _base_entry(self, i: int) -> CatalogEntry:
        vid = self._ids[i]
        source = {k: col[i] for k, col in self._source.items()}
        if vid in self._source_extra:
            source.update(self._source_extra[vid])
        return CatalogEntry(self._frag_names[int(self._frag[i])], int(self._start[i]), int(self._n[i]),
                            bool(self._mask[i]), source, self._attrs.get(vid) or {}, float(self._time[i]))

    def get(self, vid: str) -> CatalogEntry | None:
        """The committed entry of ``vid``, or None."""
        if vid in self._over:
            return self._over[vid]
        i = self._pos.get(vid)
        return None if i is None else self._base_entry(i)

    def __contains__(self, vid: object) -> bool:
        if vid in self._over:
            return self._over[vid] is not None
        return vid in self._pos

    def __getitem__(self, vid: str) -> CatalogEntry:
        entry = self.get(vid)
        if entry is None:
            raise KeyError(vid)
        return entry

    def __len__(self) -> int:
        return len(self.videos())

    def videos(self) -> list[str]:
        """Sorted ids of the committed entries (cached per state; do not modify)."""
        if self._sorted is None:
            if not self._over:
                self._sorted = self._ids  # checkpoints are written in id order
            else:
                ids = set(self._ids)
                for vid, entry in self._over.items():
                    if entry is None:
                        ids.discard(vid)
                    else:
                        ids.add(vid)
                self._sorted = sorted(ids)
        return self._sorted

    def columns(self, ids: Sequence[str]) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                    npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """For ``ids`` (all committed): fragment names, and per id fragment index, start, rows, mask."""
        if not self._over and ids is self._ids:
            return self._frag_names, self._frag, self._start, self._n, self._mask
        if not self._over:
            pos = self._pos
            idx = np.fromiter((pos[v] for v in ids), dtype=np.int64, count=len(ids))
            return self._frag_names, self._frag[idx], self._start[idx], self._n[idx], self._mask[idx]
        # The checkpoint's entries as whole columns; only the overlay's entries one by one.
        names = list(self._frag_names)
        lookup = {f: i for i, f in enumerate(names)}
        over, pos = self._over, self._pos
        idx = np.fromiter((-1 if v in over else pos[v] for v in ids), dtype=np.int64, count=len(ids))
        base = idx >= 0
        out = np.zeros((4, len(ids)), dtype=np.int64)
        taken = idx[base]
        out[0, base], out[1, base], out[2, base] = self._frag[taken], self._start[taken], self._n[taken]
        out[3, base] = self._mask[taken]
        for j in np.flatnonzero(~base).tolist():
            e = over[ids[j]]
            if e is None:
                raise KeyError(ids[j])
            if e.fragment not in lookup:
                lookup[e.fragment] = len(names)
                names.append(e.fragment)
            out[:, j] = (lookup[e.fragment], e.start, e.n_rows, e.has_mask)
        return names, out[0], out[1], out[2], out[3].astype(bool)

    def live_rows(self) -> dict[str, int]:
        """Live (referenced) rows per fragment."""
        keep = np.ones(len(self._ids), bool)
        if self._over:
            for vid in self._over:
                i = self._pos.get(vid)
                if i is not None:
                    keep[i] = False
        counts = np.bincount(self._frag[keep], weights=self._n[keep], minlength=len(self._frag_names))
        rows = {self._frag_names[i]: int(c) for i, c in enumerate(counts) if c > 0}
        for entry in self._over.values():
            if entry is not None:
                rows[entry.fragment] = rows.get(entry.fragment, 0) + entry.n_rows
        for k in np.flatnonzero(keep & (self._n == 0)).tolist():  # empty entries reference theirs too
            rows.setdefault(self._frag_names[int(self._frag[k])], 0)
        return rows

    def total_rows(self) -> int:
        """Rows over all committed entries."""
        return sum(self.live_rows().values())

    def attrs_of(self, ids: Sequence[str]) -> tuple[Mapping[str, Any], ...]:
        """Extractor attrs of ``ids`` (empty mappings for entries without)."""
        empty: Mapping[str, Any] = {}
        over = self._over
        if not over:  # one C-level pass (most entries carry no attrs)
            return tuple(map(self._attrs.get, ids, itertools.repeat(empty)))
        return tuple((e.attrs if (e := over[v]) is not None else empty) if v in over
                     else self._attrs.get(v, empty) for v in ids)

    def nonempty_attrs(self, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Copies of the non-empty extractor attrs of ``ids`` (None: every committed entry), by id.

        Walks only the entries that carry attrs (few) when asked for all of them.
        """
        if ids is not None:
            return {v: dict(a) for v, a in zip(ids, self.attrs_of(ids), strict=True) if a}
        over = self._over
        out = {v: dict(a) for v, a in self._attrs.items() if a and v not in over}
        out.update({v: dict(e.attrs) for v, e in over.items() if e is not None and e.attrs})
        return out

    def warnings(self) -> dict[str, str]:
        """Entries whose extractor attrs carry a ``warning``, with it."""
        out = {v: str(a["warning"]) for v, a in self._attrs.items()
               if a.get("warning") and v not in self._over}
        out.update({v: str(e.attrs["warning"]) for v, e in self._over.items()
                    if e is not None and e.attrs.get("warning")})
        return dict(sorted(out.items()))

    def changed_sources(self, current: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """Ids of ``current`` (id -> source facts now) committed with other size/mtime/clip bounds.

        Same rule as :func:`affectcache.store.zarr_store.source_changed`, on the columns directly: the
        checkpoint's facts are compared as one tuple per entry built once per state (no per-entry
        objects), the few entries changed since the checkpoint one by one.
        """
        out: set[str] = set()
        over, extra = self._over, self._source_extra
        special = [v for v in over if v in current] + [v for v in extra if v in current and v not in over]
        for vid in special:
            entry = self.get(vid)
            if entry is not None and _differs(tuple(entry.source.get(k) for k in _COMPARED), current[vid]):
                out.add(vid)
        if not self._ids:
            return out
        ids = list(current)
        now = _facts(list(current.values()))
        if ids == self._ids:  # a manifest of exactly the committed entries: rows line up already
            old = self._source_facts()
        else:
            old = list(map(self._facts_by_id().get, ids, itertools.repeat(_NO_FACTS)))
        # Compared in C first; only the differing few are looked at one by one.
        candidates = itertools.compress(zip(ids, old, now, strict=True), map(operator.ne, old, now))
        skip = set(special)
        # Not comparable (media gone now, or recorded without source facts) counts as unchanged.
        out.update(v for v, o, n in candidates if o[0] is not None and n[0] is not None and v not in skip)
        return out

    def _facts_by_id(self) -> dict[str, tuple[Any, ...]]:
        if self._facts_map is None:
            self._facts_map = dict(zip(self._ids, self._source_facts(), strict=True))
        return self._facts_map

    def _source_facts(self) -> list[tuple[Any, ...]]:
        """Per checkpoint row, the compared source facts as one tuple (built once per state)."""
        if self._facts_cache is None:
            if self._source_cols is None:
                packed = self._source_packed
                cols = [_unpack_optional(packed[f"source_{k}"]) for k in _COMPARED]
            else:
                cols = [self._source_cols[k] for k in _COMPARED]
            self._facts_cache = list(zip(*cols, strict=True))
        return self._facts_cache

    def retired(self) -> list[str]:
        """Committed fragments no entry points at (garbage until purged)."""
        live = self.live_rows()
        return sorted(f for f in self.fragment_rows if f not in live)

    # ---- changes ----------------------------------------------------------------------------------
    def copy(self) -> CatalogState:
        """A new state sharing the (immutable) checkpoint columns."""
        new = CatalogState.__new__(CatalogState)
        new.__dict__.update(self.__dict__)
        new._fail_over = dict(self._fail_over)
        new.fragment_rows = dict(self.fragment_rows)
        new.retired_at = dict(self.retired_at)
        new._over = dict(self._over)
        new._sorted = self._sorted
        return new

    def apply(self, record: Mapping[str, Any]) -> None:
        """Apply one commit record (the next version) to this (new, unshared) state."""
        when = float(record.get("time_s", 0.0))
        self.fragment_rows.update({str(k): int(v) for k, v in (record.get("fragments") or {}).items()})
        expect = record.get("expect")
        changed = False
        for i, row in enumerate(record.get("entries") or ()):
            vid, frag, start, n, has_mask, source, attrs = row
            if expect is not None:
                current = self.get(vid)
                old_frag, old_start = expect[i]
                if current is None or (current.fragment, current.start) != (old_frag, old_start):
                    continue  # superseded since the compaction read it: its copied rows are garbage
                if source is None:  # a compaction moves rows only: source facts and attrs stay
                    source, attrs = current.source, current.attrs
            self._over[vid] = CatalogEntry(frag, int(start), int(n), bool(has_mask), source or {},
                                           attrs or {}, when)
            self._drop_failure(vid)
            changed = True
        for vid in record.get("remove") or ():
            if vid in self:
                self._over[vid] = None
                changed = True
            self._drop_failure(vid)
        for vid in record.get("resolved") or ():
            self._drop_failure(vid)
        for vid, rec in (record.get("failures") or {}).items():
            self._fail_over[vid] = dict(rec)
            self._fail_merged = None
        self.retired_at.update({str(k): float(t) for k, t in (record.get("retired") or {}).items()})
        for frag in record.get("purged") or ():
            self.fragment_rows.pop(frag, None)
            self.retired_at.pop(frag, None)
        self.version = int(record["version"])
        if changed:
            self._sorted = None

    # ---- checkpoints ------------------------------------------------------------------------------
    def to_checkpoint(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """The state as columnar JSON data, and the payloads of the failure parts it references.

        Built from the checkpoint's columns with the overlay's entries merged in as whole columns (only
        the overlay's entries are visited one by one), so a checkpoint costs little more than its JSON.
        Failure records are not in it: it references immutable parts (see :meth:`_plan_failure_parts`);
        the part numbered ``version`` is new when this state's checkpoint did not reference it.
        """
        if self._over:
            cols = self._merged_columns()
        else:
            cols = {"video_id": self._ids, "frag_names": self._frag_names, "fragment": self._frag,
                    "start": self._start, "n_rows": self._n, "mask": self._mask, "time_s": self._time,
                    "source": self._packed_source(), "source_extra": self._source_extra,
                    "attrs": self._attrs}
        names, frag = cols["frag_names"], cols["fragment"]
        used = sorted(set(self.fragment_rows) | {names[i] for i in np.unique(frag).tolist()})
        where = {f: i for i, f in enumerate(used)}
        remap = np.array([where.get(f, -1) for f in names], dtype=np.int64)
        source = cols["source"]
        columns: dict[str, Any] = {
            "video_id": cols["video_id"], "fragment": _pack_int(remap[frag] if len(frag) else frag),
            "start": _pack_int(cols["start"]), "n_rows": _pack_int(cols["n_rows"]),
            "mask": _pack(cols["mask"], "|b1"), "time_s": _pack(cols["time_s"], "<f8"),
            "source_extra": {v: x for v, x in cols["source_extra"].items() if x}, "attrs": cols["attrs"],
            **source}
        parts = self._plan_failure_parts()
        return ({"format": CHECKPOINT_FORMAT, "version": self.version, "fragments": used,
                 "fragment_rows": [self.fragment_rows.get(f, 0) for f in used], "entries": columns,
                 "retired_at": {f: t for f, t in self.retired_at.items() if f in self.fragment_rows},
                 "failure_parts": [[p.version, p.size] for p in parts]},
                {int(p.version): dict(p.payload) for p in parts if p.version is not None})

    def _plan_failure_parts(self) -> tuple[FailurePart, ...]:
        """The failure parts of a checkpoint at this state's version (LSM-style, never one rewrite per
        checkpoint of all records).

        The changes since the last checkpoint become one new part; it absorbs the newest existing parts
        while they are no larger than it (a binary counter: parts stay few, about log2 of the records,
        and each record is rewritten about that many times over its life instead of at every
        checkpoint). Unchanged failures reuse the previous parts as they are. A format-1 checkpoint's
        inline records (part without a version) are written out as a part once.
        """
        parts = list(self._fail_parts)
        changes = dict(self._fail_over)
        if any(r is None for r in changes.values()):
            # Every committed entry drops its failure unchecked; keep only drops of recorded ones.
            known = self._part_failure_ids()
            changes = {v: r for v, r in changes.items() if r is not None or v in known}
        inline = any(p.version is None for p in parts)
        if not changes and not inline:
            return tuple(parts)
        while parts and (inline or parts[-1].size <= len(changes) or len(parts) >= MAX_FAILURE_PARTS):
            changes = {**parts.pop().changes(), **changes}
        if not parts:  # merged down to the base: drops have nothing left to drop
            changes = {v: r for v, r in changes.items() if r is not None}
            if not changes:
                return ()
        return (*parts, FailurePart.build(self.version, changes))

    def _part_failure_ids(self) -> frozenset[str]:
        if self._fail_ids is None:
            self._fail_ids = frozenset(v for p in self._fail_parts for v, r in p.changes().items()
                                       if r is not None)
        return self._fail_ids

    def _packed_source(self) -> dict[str, Any]:
        """The checkpoint's source columns in their checkpoint encoding."""
        if self._source_cols is None:
            return {k: v for k, v in self._source_packed.items() if k != "source_extra"}
        cols = self._source_cols
        return {"source_path": cols["path"],
                **{f"source_{k}": _pack_optional(cols[k]) for k in ("size", "mtime", "start_s", "end_s")}}

    def _merged_columns(self) -> dict[str, Any]:
        """The checkpoint's columns without the overlaid entries, plus the overlay's, in id order."""
        pos = self._pos
        drop = [pos[v] for v in self._over if v in pos]
        keep = np.ones(len(self._ids), dtype=bool)
        keep[drop] = False
        added = sorted((v, e) for v, e in self._over.items() if e is not None)
        names = list(self._frag_names)
        lookup = {f: i for i, f in enumerate(names)}
        for _, e in added:
            if e.fragment not in lookup:
                lookup[e.fragment] = len(names)
                names.append(e.fragment)
        ids = np.concatenate([np.array(self._ids, dtype=object)[keep],
                              np.array([v for v, _ in added], dtype=object)])
        order = np.argsort(ids.astype(str), kind="stable")

        def merged(base: npt.NDArray[Any], new: Sequence[Any], dtype: Any) -> npt.NDArray[Any]:
            return np.concatenate([base[keep], np.asarray(new, dtype=dtype)])[order]

        base = self._packed_source()
        path = np.array(base["source_path"], dtype=object)[keep]
        out_source: dict[str, Any] = {"source_path": np.concatenate([path, _objects(
            [e.source.get("path") for _, e in added])])[order].tolist()}
        for key in ("size", "mtime", "start_s", "end_s"):
            # Merged as packed numbers: the checkpoint's values are never turned into Python objects.
            old = base[f"source_{key}"]
            old_vals, old_present = _optional_arrays(old)
            new_vals, new_present = _optional_arrays(_pack_optional([e.source.get(key) for _, e in added]))
            if old_present.any() and new_present.any() and old_vals.dtype != new_vals.dtype:
                old_vals, new_vals = old_vals.astype(np.float64), new_vals.astype(np.float64)
            elif not old_present.any():
                old_vals = old_vals.astype(new_vals.dtype)  # all absent: take the other side's type
            else:
                new_vals = new_vals.astype(old_vals.dtype)
            present = np.concatenate([old_present[keep], new_present])[order]
            merged_vals = np.concatenate([old_vals[keep], new_vals])[order]
            if not present.any():
                out_source[f"source_{key}"] = {"absent": len(present)}
                continue
            column: dict[str, Any] = {"values": _pack_int(merged_vals) if merged_vals.dtype.kind == "i"
                                      else _pack(merged_vals, "<f8")}
            if not present.all():
                column["present"] = _pack(present, "|b1")
            out_source[f"source_{key}"] = column
        dropped = {self._ids[i] for i in drop}
        extra = {v: x for v, x in self._source_extra.items() if v not in dropped}
        attrs = {v: a for v, a in self._attrs.items() if v not in dropped}
        for vid, e in added:
            more = {k: x for k, x in e.source.items() if k not in _SOURCE_COLUMNS}
            if more:
                extra[vid] = more
            if e.attrs:
                attrs[vid] = dict(e.attrs)
        return {"video_id": ids[order].tolist(), "frag_names": names,
                "fragment": merged(self._frag, [lookup[e.fragment] for _, e in added], np.int64),
                "start": merged(self._start, [e.start for _, e in added], np.int64),
                "n_rows": merged(self._n, [e.n_rows for _, e in added], np.int64),
                "mask": merged(self._mask, [e.has_mask for _, e in added], bool),
                "time_s": merged(self._time, [e.time for _, e in added], np.float64),
                "source": out_source, "source_extra": extra, "attrs": attrs}

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any],
                        parts: Mapping[int, Mapping[str, Any]] | None = None) -> CatalogState:
        """Inverse of :meth:`to_checkpoint` (no per-entry objects); ``parts``: the payloads of the
        failure parts ``data`` references (a format-1 checkpoint holds its records inline)."""
        state = cls()
        cols = data["entries"]
        state.version = state.checkpoint_version = int(data["version"])
        state._ids = list(cols["video_id"])
        state._frag_names = list(data["fragments"])
        for attr in _LazyColumn.NAMES:  # decoded on first use (listing needs none of them)
            del state.__dict__[attr]
        state._packed_cols = cols
        state._source_cols = None
        state._source_packed = {k: v for k, v in cols.items() if k.startswith("source_")}
        state._source_extra = dict(cols.get("source_extra") or {})
        state._attrs = dict(cols.get("attrs") or {})
        refs = data.get("failure_parts")
        if refs is None:  # format 1: the records inline, as one part that was never written on its own
            inline = data.get("failures") or _pack_failures({})
            size = len(inline["video_id"]) + len(inline.get("other") or {})
            state._fail_parts = (FailurePart(None, size, {"set": inline, "drop": []}),) if size else ()
        else:
            state._fail_parts = tuple(FailurePart(int(v), int(n), (parts or {})[int(v)]) for v, n in refs)
        state._fail_decoded = None if state._fail_parts else {}
        state.retired_at = {str(f): float(t) for f, t in (data.get("retired_at") or {}).items()}
        state.fragment_rows = dict(zip(state._frag_names, (int(x) for x in data["fragment_rows"]),
                                       strict=True))
        return state


def entry_rows(info: FragmentInfo) -> list[list[Any]]:
    """A fragment's entries as commit-record rows."""
    return [[e.video_id, info.fragment_id, e.start, e.n_rows, e.has_mask, dict(e.source), dict(e.attrs)]
            for e in info.entries]


class Catalog:
    """Reads and commits one generation's log (``<modality>/_log/<generation>/``)."""

    def __init__(self, keys: Keys, modality: str, generation: str) -> None:
        self.keys = keys
        self.modality = modality
        self.generation = generation
        self.prefix = f"{modality}/{LOG_GROUP}/{generation}"
        self._state = CatalogState()

    def create(self) -> None:
        """Write the (empty) log groups of a new generation."""
        self.keys.put_many([(f"{self.modality}/{LOG_GROUP}/zarr.json", group_bytes({})),
                            (f"{self.prefix}/zarr.json", group_bytes({}))])

    # ---- reading ----------------------------------------------------------------------------------
    def _listing(self, *, parts: bool = False) -> tuple[list[int], list[int]]:
        """Sorted record and checkpoint versions (``parts``: failure part versions instead of records)."""
        versions: list[int] = []
        checkpoints: list[int] = []
        first = "f" if parts else "v"
        for name in self.keys.list(self.prefix):
            if len(name) == 11 and name[1:].isdigit():
                if name[0] == first:
                    versions.append(int(name[1:]))
                elif name[0] == "c":
                    checkpoints.append(int(name[1:]))
        return sorted(versions), sorted(checkpoints)

    def _read_node(self, kind: str, version: int, *attrs: str) -> dict[str, Any] | None:
        """The payload under the first of ``attrs`` the node has; None when the node is gone."""
        raw = self.keys.get(f"{self.prefix}/{kind}{version:010d}/zarr.json")
        if raw is None:
            return None
        try:
            found = json.loads(raw)["attributes"]
            payload: dict[str, Any] = next(found[a] for a in attrs if a in found)
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise StoreError(f"{self.prefix}/{kind}{version:010d} is unreadable ({exc!r}); the store was "
                             "damaged outside affectcache, or written by a newer affectcache") from exc
        return payload

    def _read_checkpoint(self, version: int) -> CatalogState | None:
        """The state of checkpoint ``version`` with its failure parts; None when any of them is gone
        (trimmed while we listed: list again)."""
        data = self._read_node("c", version, _CHECKPOINT_ATTR, _CHECKPOINT_ATTR_1)
        if data is None:
            return None
        if int(data.get("format", 1)) > CHECKPOINT_FORMAT:
            raise StoreError(f"{self.prefix}/c{version:010d} has catalog format {data['format']}, newer than "
                             f"this affectcache reads ({CHECKPOINT_FORMAT}); upgrade affectcache")
        parts: dict[int, dict[str, Any]] = {}
        for ref, _size in data.get("failure_parts") or ():
            payload = self._read_node("f", int(ref), _PART_ATTR)
            if payload is None:
                return None
            parts[int(ref)] = payload
        return CatalogState.from_checkpoint(data, parts)

    def state(self) -> CatalogState:
        """The current committed state (the cached one, brought up to date)."""
        for _attempt in range(_READ_ATTEMPTS):
            versions, checkpoints = self._listing()
            state = self._state
            newest_cp = checkpoints[-1] if checkpoints else -1
            base = state
            if newest_cp > state.version and (state.version + 1) not in versions:
                # Records we would need were trimmed: start from the newest checkpoint.
                loaded = self._read_checkpoint(newest_cp)
                if loaded is None:
                    continue  # trimmed while we listed: list again
                base = loaded
            elif newest_cp > state.version + CHECKPOINT_EVERY or (newest_cp >= 0 and state.version < 0):
                # Far behind, or a fresh reader: one checkpoint instead of replaying the records before it
                # (one request each on an object store).
                base = self._read_checkpoint(newest_cp) or state
            if base is state and (not versions or versions[-1] <= state.version):
                return state
            if base is state:
                base = state.copy()
            ok = True
            for v in (v for v in versions if v > base.version):
                if v != base.version + 1:
                    break  # a gap: a committer that died before writing; nothing after it counts
                record = self._read_node("v", v, _RECORD_ATTR)
                if record is None:
                    if v < versions[-1]:
                        ok = False  # trimmed under us
                    break
                base.apply(record)
            if ok:
                self._state = base
                return base
        raise StoreError(f"could not read a consistent catalog at {self.prefix} after {_READ_ATTEMPTS} "
                         "attempts (the log keeps changing under the reader)")

    # ---- committing -------------------------------------------------------------------------------
    def commit(self, record: dict[str, Any], *, checkpoint: bool = False) -> CatalogState:
        """Append ``record`` as the next version (retrying on a concurrent commit); the new state.

        ``checkpoint`` forces a checkpoint right after it (compaction and upgrade end with one).
        """
        for attempt in range(1000):
            # First try on the cached state without listing the log: if another committer got there
            # first our version is taken (put_new fails) and we re-read; if it was even trimmed, the
            # checkpoint check below withdraws the record.
            state = self._state if attempt == 0 and self._state.version >= 0 else self.state()
            version = state.version + 1
            payload = {**record, "version": version, "time_s": time.time()}
            doc = group_bytes({_RECORD_ATTR: payload})
            key = f"{self.prefix}/v{version:010d}"
            if self.keys.put_new(f"{key}/zarr.json", doc):
                if any(c >= version for c in self._listing()[1]):
                    # Our version had been committed, checkpointed and trimmed by others meanwhile:
                    # this record is not part of the history. Withdraw it and retry.
                    self.keys.delete_tree(key)
                    continue
                new = state.copy()  # states handed out are never mutated (readers in threads)
                new.apply(payload)
                self._state = new
                size = sum(len(record.get(k) or ()) for k in ("entries", "failures", "remove", "resolved"))
                if checkpoint or (version % CHECKPOINT_EVERY == 0 and version > 0) or (
                        size >= CHECKPOINT_ENTRIES):
                    new = self._checkpoint(new)
                    self._state = new
                return new
            logger.debug("%s: version %d was committed concurrently; retrying", self.prefix, version)
        raise StoreError(f"{self.prefix}: could not commit after 1000 concurrent attempts")

    def _checkpoint(self, state: CatalogState) -> CatalogState:
        on_disk = set(self._listing(parts=True)[0])
        if any(p.version is not None and p.version not in on_disk for p in state._fail_parts):
            # Our state came from a checkpoint whose parts a concurrent committer has since trimmed:
            # write every record into one new part rather than reference a missing one.
            state = state.copy()
            state._fail_parts = tuple(FailurePart(None, p.size, p.payload) for p in state._fail_parts)
        data, parts = state.to_checkpoint()
        old = {p.version for p in state._fail_parts}
        # Parts first, checkpoint last: a crash in between leaves an unreferenced part, trimmed later.
        for v, payload in parts.items():
            if v not in old:
                self.keys.put(f"{self.prefix}/f{v:010d}/zarr.json", group_bytes({_PART_ATTR: payload}))
        doc = group_bytes({_CHECKPOINT_ATTR: data})
        self.keys.put_new(f"{self.prefix}/c{state.version:010d}/zarr.json", doc)
        # Trim behind the *previous* checkpoint, not this one: a committer that read an older state
        # must still find its version taken (see commit), and a reader that listed before the trim
        # and misses a record lists again and starts from a checkpoint.
        versions, checkpoints = self._listing()
        older = [c for c in checkpoints if c < state.version]
        if older:
            horizon = older[-1]
            garbage_parts: list[int] = []
            if state.checkpoint_version == horizon:
                # The previous checkpoint is the one our state came from, so we know every part the two
                # kept checkpoints reference; the others before it belong only to trimmed checkpoints
                # (or to a checkpoint writer that died). Otherwise (a concurrent committer wrote it) the
                # parts wait for a later trim.
                referenced = set(parts) | {p.version for p in state._fail_parts}
                garbage_parts = [f for f in on_disk if f < horizon and f not in referenced]
            self.keys.delete_trees([f"{self.prefix}/v{v:010d}" for v in versions if v <= horizon]
                                   + [f"{self.prefix}/c{c:010d}" for c in older if c < horizon]
                                   + [f"{self.prefix}/f{f:010d}" for f in garbage_parts])
        return CatalogState.from_checkpoint(data, parts)  # columnar again: cheap to query and copy

    def add(self, fragments: Sequence[FragmentInfo] = (), *,
            failures: Mapping[str, Mapping[str, Any]] | None = None, resolved: Iterable[str] = (),
            remove: Iterable[str] = (), op: str = "write") -> CatalogState:
        """Commit fragments' entries, failure records and removals in one record."""
        record: dict[str, Any] = {"op": op}
        if fragments:
            record["fragments"] = {f.fragment_id: f.n_rows for f in fragments}
            record["entries"] = [row for f in fragments for row in entry_rows(f)]
        if failures:
            record["failures"] = {k: dict(v) for k, v in failures.items()}
        resolved = list(resolved)
        if resolved:
            record["resolved"] = resolved
        removed = list(remove)
        if removed:
            record["remove"] = removed
        return self.commit(record)


# Numeric columns travel as base64 of little-endian arrays inside the JSON: Python's json parses a
# float in about a microsecond, which alone would make reading a 20k-entry catalog take tens of ms.
def _pack(arr: npt.NDArray[Any], dtype: str) -> dict[str, str]:
    raw = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    return {"dtype": dtype, "b64": base64.b64encode(raw).decode()}


def _pack_int(arr: npt.NDArray[Any]) -> dict[str, str]:
    """Integers in the narrowest signed type that holds them (readers widen to int64)."""
    arr = np.asarray(arr, dtype=np.int64)
    lo, hi = (int(arr.min()), int(arr.max())) if len(arr) else (0, 0)
    for dtype in ("<i1", "<i2", "<i4"):
        info = np.iinfo(np.dtype(dtype))
        if info.min <= lo and hi <= info.max:
            return _pack(arr, dtype)
    return _pack(arr, "<i8")


def _unpack(data: Mapping[str, str]) -> npt.NDArray[Any]:
    return np.frombuffer(base64.b64decode(data["b64"]), dtype=data["dtype"])


def _pack_optional(values: Sequence[Any]) -> dict[str, Any]:
    """Numbers that may be None (ints stay ints): packed values + a packed 'present' mask, the mask left
    out when every value is present and the values too when none is (clip bounds of whole files)."""
    present = np.array([v is not None for v in values], dtype=bool)
    if not present.any():
        return {"absent": len(values)}
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None)
    filled = np.array([v if v is not None else 0 for v in values], dtype=np.int64 if is_int else np.float64)
    packed = {"values": _pack_int(filled) if is_int else _pack(filled, "<f8")}
    return packed if present.all() else {**packed, "present": _pack(present, "|b1")}


def _optional_arrays(data: Mapping[str, Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """(values, present) of a :func:`_pack_optional` column (any of its forms)."""
    if "absent" in data:
        n = int(data["absent"])
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    values = _unpack(data["values"])
    values = values.astype(np.int64 if values.dtype.kind == "i" else np.float64, copy=False)
    present = _unpack(data["present"]) if "present" in data else np.ones(len(values), dtype=bool)
    return values, present


def _differs(old: tuple[Any, ...], now: Mapping[str, Any]) -> bool:
    # Not comparable (media gone now, or recorded without source facts) counts as unchanged.
    return old[0] is not None and now.get("size") is not None and old != tuple(now.get(k) for k in _COMPARED)


_NO_FACTS = (None, None, None, None)
_FACTS = operator.itemgetter(*_COMPARED)


def _facts(sources: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The compared source facts of each mapping, as tuples (missing keys read as None)."""
    try:
        return list(map(_FACTS, sources))
    except KeyError:
        return [tuple(src.get(k) for k in _COMPARED) for src in sources]


def _objects(values: Sequence[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _unpack_optional(data: Mapping[str, Any]) -> list[Any]:
    if "absent" in data:
        return [None] * int(data["absent"])
    values_arr, present = _optional_arrays(data)
    values: list[Any] = values_arr.tolist()
    if not present.all():
        for i in np.flatnonzero(~present).tolist():
            values[i] = None
    return values


_FAILURE_KEYS = ("error", "message", "time")


def _pack_failures(failures: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Failure records as columns (json handles lists of strings much faster than 10^4 small dicts)."""
    plain = {v: r for v, r in failures.items() if set(r) == set(_FAILURE_KEYS)}
    ids = sorted(plain)
    other = {v: dict(r) for v, r in failures.items() if v not in plain}
    out: dict[str, Any] = {"video_id": ids, "other": other}
    for key in _FAILURE_KEYS:
        out[key] = [plain[v][key] for v in ids]
    return out


def _unpack_failures(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    columns = [data[k] for k in _FAILURE_KEYS]
    out = {vid: dict(zip(_FAILURE_KEYS, values, strict=True))
           for vid, *values in zip(data["video_id"], *columns, strict=True)}
    out.update({k: dict(v) for k, v in (data.get("other") or {}).items()})
    return out
