"""The per-modality catalog: which entries exist, in which fragment rows, as an append-only commit log.

Modelled on the Delta Lake / Iceberg / Lance commit protocol, reduced to what a feature store needs:

- Data is written first, as immutable fragments under fresh names (:mod:`affectcache.store.fragments`);
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
  log: recording one appends a record, it never rewrites the others.
- Records and checkpoints are Zarr groups (the payload is their ``attributes``), so the whole store
  stays a valid Zarr hierarchy for plain tools.

The state (:class:`CatalogState`) maps each video id to its fragment, first row, row count, mask flag,
source facts, extractor attrs and commit time, plus the failure records and the *retired* fragments
(no entry points at them any more: garbage until a compaction or cleanup deletes them).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from affectcache.store.errors import StoreError
from affectcache.store.fragments import group_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from affectcache.store.fragments import FragmentInfo
    from affectcache.store.kv import Keys

logger = logging.getLogger(__name__)

LOG_GROUP = "_log"
CHECKPOINT_EVERY = 32
"""A checkpoint of the whole state every this many commits: readers apply at most this many records."""
_RECORD_ATTR = "affectcache_commit"
_CHECKPOINT_ATTR = "affectcache_checkpoint"
_SOURCE_COLUMNS = ("path", "size", "mtime", "start_s", "end_s")
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


@dataclass
class CatalogState:
    """The committed state of one generation of a modality, at ``version``."""

    version: int = -1
    """Last applied commit (-1: none yet)."""
    entries: dict[str, CatalogEntry] = field(default_factory=dict)
    """Committed entries by video id."""
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-item failure records: ``{video_id: {error, message, time}}``."""
    fragment_rows: dict[str, int] = field(default_factory=dict)
    """Rows of every committed fragment not yet purged (live or retired)."""
    _sorted: list[str] | None = None

    def videos(self) -> list[str]:
        """Sorted ids of the committed entries (cached per state)."""
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        return self._sorted

    def live_fragments(self) -> Counter[str]:
        """Entries per fragment that at least one entry points at."""
        return Counter(e.fragment for e in self.entries.values())

    def retired(self) -> list[str]:
        """Committed fragments no entry points at (garbage until purged)."""
        live = self.live_fragments()
        return sorted(f for f in self.fragment_rows if f not in live)

    def apply(self, record: Mapping[str, Any]) -> None:
        """Apply one commit record (the next version)."""
        when = float(record.get("time_s", 0.0))
        self.fragment_rows.update({str(k): int(v) for k, v in (record.get("fragments") or {}).items()})
        expect = record.get("expect")
        for i, row in enumerate(record.get("entries") or ()):
            vid, frag, start, n, has_mask, source, attrs = row
            if expect is not None:
                current = self.entries.get(vid)
                old_frag, old_start = expect[i]
                if current is None or (current.fragment, current.start) != (old_frag, old_start):
                    continue  # superseded since the compaction read it: its copied rows are garbage
            self.entries[vid] = CatalogEntry(frag, int(start), int(n), bool(has_mask), source or {},
                                             attrs or {}, when)
            self.failures.pop(vid, None)
        for vid in record.get("remove") or ():
            self.entries.pop(vid, None)
            self.failures.pop(vid, None)
        for vid in record.get("resolved") or ():
            self.failures.pop(vid, None)
        for vid, rec in (record.get("failures") or {}).items():
            self.failures[vid] = dict(rec)
        for frag in record.get("purged") or ():
            self.fragment_rows.pop(frag, None)
        self.version = int(record["version"])
        self._sorted = None

    def to_checkpoint(self) -> dict[str, Any]:
        """The state as columnar JSON data (fast to parse at 10^4-10^5 entries)."""
        vids = sorted(self.entries)
        frags = sorted(self.fragment_rows)
        fidx = {f: i for i, f in enumerate(frags)}
        rows = [self.entries[v] for v in vids]
        columns: dict[str, Any] = {
            "video_id": vids, "fragment": [fidx[e.fragment] for e in rows],
            "start": [e.start for e in rows], "n_rows": [e.n_rows for e in rows],
            "mask": [int(e.has_mask) for e in rows], "time_s": [e.time for e in rows]}
        for key in _SOURCE_COLUMNS:
            columns[f"source_{key}"] = [e.source.get(key) for e in rows]
        extra = {v: {k: x for k, x in e.source.items() if k not in _SOURCE_COLUMNS}
                 for v, e in zip(vids, rows, strict=True)}
        columns["source_extra"] = {v: x for v, x in extra.items() if x}
        columns["attrs"] = {v: dict(e.attrs) for v, e in zip(vids, rows, strict=True) if e.attrs}
        return {"version": self.version, "fragments": frags,
                "fragment_rows": [self.fragment_rows[f] for f in frags],
                "entries": columns, "failures": self.failures}

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> CatalogState:
        """Inverse of :meth:`to_checkpoint`."""
        frags: list[str] = list(data["fragments"])
        cols = data["entries"]
        extra = cols.get("source_extra") or {}
        attrs = cols.get("attrs") or {}
        source_cols = [cols[f"source_{k}"] for k in _SOURCE_COLUMNS]
        entries: dict[str, CatalogEntry] = {}
        for i, vid in enumerate(cols["video_id"]):
            source = {k: col[i] for k, col in zip(_SOURCE_COLUMNS, source_cols, strict=True)}
            if vid in extra:
                source.update(extra[vid])
            entries[vid] = CatalogEntry(frags[cols["fragment"][i]], cols["start"][i], cols["n_rows"][i],
                                        bool(cols["mask"][i]), source, attrs.get(vid) or {},
                                        cols["time_s"][i])
        state = cls(version=int(data["version"]), entries=entries,
                    failures={k: dict(v) for k, v in (data.get("failures") or {}).items()},
                    fragment_rows=dict(zip(frags, (int(n) for n in data["fragment_rows"]), strict=True)))
        state._sorted = list(cols["video_id"])
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
    def _listing(self) -> tuple[list[int], list[int]]:
        versions: list[int] = []
        checkpoints: list[int] = []
        for name in self.keys.list(self.prefix):
            if len(name) == 11 and name[1:].isdigit():
                (versions if name[0] == "v" else checkpoints if name[0] == "c" else []).append(int(name[1:]))
        return sorted(versions), sorted(checkpoints)

    def _read_node(self, kind: str, version: int, attr: str) -> dict[str, Any] | None:
        raw = self.keys.get(f"{self.prefix}/{kind}{version:010d}/zarr.json")
        if raw is None:
            return None
        try:
            payload: dict[str, Any] = json.loads(raw)["attributes"][attr]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.prefix}/{kind}{version:010d} is unreadable ({exc}); the store was "
                             "damaged outside affectcache") from exc
        return payload

    def state(self) -> CatalogState:
        """The current committed state (the cached one, brought up to date)."""
        for _attempt in range(_READ_ATTEMPTS):
            versions, checkpoints = self._listing()
            state = self._state
            newest_cp = checkpoints[-1] if checkpoints else -1
            base = state
            if newest_cp > state.version and (state.version + 1) not in versions:
                # Records we would need were trimmed: start from the newest checkpoint.
                data = self._read_node("c", newest_cp, _CHECKPOINT_ATTR)
                if data is None:
                    continue  # trimmed while we listed: list again
                base = CatalogState.from_checkpoint(data)
            elif newest_cp > state.version + CHECKPOINT_EVERY:
                data = self._read_node("c", newest_cp, _CHECKPOINT_ATTR)
                if data is not None:
                    base = CatalogState.from_checkpoint(data)
            if base is state and (not versions or versions[-1] <= state.version):
                return state
            if base is state:
                base = _copy_state(state)
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
    def commit(self, record: dict[str, Any]) -> CatalogState:
        """Append ``record`` as the next version (retrying on a concurrent commit); the new state."""
        for _attempt in range(1000):
            state = self.state()
            version = state.version + 1
            payload = {**record, "version": version, "time_s": time.time()}
            doc = group_bytes({_RECORD_ATTR: payload})
            if self.keys.put_new(f"{self.prefix}/v{version:010d}/zarr.json", doc):
                new = _copy_state(state)  # states handed out are never mutated (readers in threads)
                new.apply(payload)
                self._state = new
                if version % CHECKPOINT_EVERY == 0 and version > 0:
                    self._checkpoint(new)
                return new
            logger.debug("%s: version %d was committed concurrently; retrying", self.prefix, version)
        raise StoreError(f"{self.prefix}: could not commit after 1000 concurrent attempts")

    def _checkpoint(self, state: CatalogState) -> None:
        doc = group_bytes({_CHECKPOINT_ATTR: state.to_checkpoint()})
        self.keys.put_new(f"{self.prefix}/c{state.version:010d}/zarr.json", doc)
        # Keep one checkpoint interval of history: a reader that listed just before this trim still
        # finds what it needs, or lists again.
        versions, checkpoints = self._listing()
        horizon = state.version - CHECKPOINT_EVERY
        for v in versions:
            if v <= horizon:
                self.keys.delete_tree(f"{self.prefix}/v{v:010d}")
        for c in checkpoints:
            if c < horizon:
                self.keys.delete_tree(f"{self.prefix}/c{c:010d}")

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


def _copy_state(state: CatalogState) -> CatalogState:
    return CatalogState(version=state.version, entries=dict(state.entries),
                        failures={k: dict(v) for k, v in state.failures.items()},
                        fragment_rows=dict(state.fragment_rows))
