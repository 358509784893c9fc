"""Compaction: rewrite a modality's live rows into few large fragments and delete the garbage.

Builds leave one fragment per task (small for utterance-level corpora), and ``--only`` rebuilds,
media-changed items and deletes leave superseded rows behind. Compaction copies the live rows of the
small or partly-dead fragments, in video-id order, into fragments of about
:attr:`CompactionPolicy.target_fragment_mb`, then commits each new fragment with a record whose entries
apply only if they still point where compaction read them (an entry rebuilt meanwhile keeps its new
rows).

Fragments no entry points at any more (*retired*) are deleted later, by a **vacuum** (as Delta Lake's
VACUUM): it first marks them retired with the time (a ``retire`` record), and deletes them, then
un-lists them with a ``purge`` record, once :attr:`CompactionPolicy.retain_s` has passed, so a reader
still holding the catalog from before keeps finding its rows meanwhile (one that does lose a fragment
re-reads the catalog and finds the copy). Every compaction, the end of every build and
``affectcache store compact --vacuum`` run a vacuum. Deleting thousands of small folders is bound by the
disk's latency (about 1 ms per fragment with parallel deletes here), which deferring takes off the
build's path. A crash at any point loses nothing: before a commit a new fragment is an unreferenced
orphan (deleted once older than :attr:`CompactionPolicy.orphan_age_s`), after it the old one is retired
garbage for a later vacuum; a retired fragment never becomes visible again.

Run it under the modality's build lock (the build runner and ``affectcache store compact`` do).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.errors import ConfigError
from affectcache.store.format.fragments import FRAGMENTS_GROUP, fragment_time_s, write_columns
from affectcache.store.zarr_store import REBUILD_ATTR

if TYPE_CHECKING:
    from affectcache.store.format.catalog import CatalogState
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CompactionPolicy:
    """When a build compacts a modality at its end, and what compaction writes."""

    min_small_fragments: int = 16
    """A build compacts a modality once it has at least this many small fragments."""
    small_fragment_mb: float = 64.0
    """Fragments holding less than this many MB of values count as small."""
    garbage_share: float = 0.25
    """A build also compacts when at least this share of the stored rows is superseded or deleted."""
    target_fragment_mb: float = 512.0
    """Approximate size of the fragments compaction writes (values, MB)."""
    orphan_age_s: float = 3600.0
    """Fragments never committed and older than this are deleted (younger ones may belong to a writer
    that is still running)."""
    retain_s: float = 3600.0
    """Retired fragments are deleted this many seconds after a vacuum first found them unreferenced
    (readers holding the older catalog may still read them until then); 0 deletes them at once."""

    def __post_init__(self) -> None:
        problems = [f"{name} must be > 0, got {getattr(self, name)}" for name in
                    ("min_small_fragments", "small_fragment_mb", "target_fragment_mb")
                    if getattr(self, name) <= 0]
        if not 0 < self.garbage_share <= 1:
            problems.append(f"garbage_share must be in (0, 1], got {self.garbage_share}")
        problems += [f"{name} must be >= 0, got {getattr(self, name)}"
                     for name in ("orphan_age_s", "retain_s") if getattr(self, name) < 0]
        if problems:
            raise ConfigError(f"invalid compaction policy: {'; '.join(problems)}")


@dataclass(frozen=True, kw_only=True)
class CompactionReport:
    """What one compaction did."""

    modality: str
    """The modality."""
    fragments_before: int
    """Live fragments before."""
    fragments_after: int
    """Live fragments after."""
    entries_moved: int
    """Entries whose rows were copied into new fragments."""
    fragments_deleted: int
    """Retired and orphaned fragments deleted."""
    fragments_retained: int
    """Retired fragments kept until their retention time has passed (deleted by a later vacuum)."""
    seconds: float
    """Wall time."""

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (f"{self.modality}: {self.fragments_before} -> {self.fragments_after} fragments, "
                f"{self.entries_moved} entries moved, {self.fragments_deleted} fragments deleted, "
                f"{self.fragments_retained} retained for readers in {self.seconds:.1f} s")


def needs_compaction(fs: FeatureStore, name: str, policy: CompactionPolicy) -> bool:
    """Whether ``name`` has many small fragments or much garbage (the build's automatic trigger)."""
    state = fs.catalog(name)
    live = state.live_rows()
    row_bytes = max(1, fs.row_bytes(name))
    small = sum(1 for f in live if state.fragment_rows[f] * row_bytes < policy.small_fragment_mb * 1e6)
    stored = sum(state.fragment_rows[f] for f in live)  # retired fragments wait for a vacuum, not this
    garbage = stored - sum(live.values())
    return small >= policy.min_small_fragments or (stored > 0 and garbage / stored >= policy.garbage_share)


def maybe_compact(fs: FeatureStore, name: str, policy: CompactionPolicy) -> CompactionReport | None:
    """Compact ``name`` when :func:`needs_compaction` says so, else vacuum it (the end of a build)."""
    if not fs.has_modality(name):
        return None
    if not needs_compaction(fs, name, policy):
        deleted, retained = vacuum(fs, name, policy)
        if deleted:
            logger.info("%s: vacuum deleted %d fragments (%d retained for readers)", name, deleted, retained)
        return None
    report = compact(fs, name, policy)
    logger.info("compacted %s", report.summary())
    return report


def compact(fs: FeatureStore, name: str, policy: CompactionPolicy = CompactionPolicy()) -> CompactionReport:
    """Rewrite the live rows of small or partly-dead fragments into few large ones; delete garbage."""
    started = time.perf_counter()
    catalog = fs.commit_log(name)
    kind = fs.provenance(name)["modality_kind"]
    state = catalog.state()
    live = state.live_rows()
    before = len(live)
    row_bytes = max(1, fs.row_bytes(name))
    small = {f for f in live if state.fragment_rows[f] * row_bytes < policy.small_fragment_mb * 1e6}
    dirty = {f for f, rows in live.items() if rows < state.fragment_rows[f]}
    selected = (small if len(small) > 1 else set()) | dirty
    every = state.videos()
    names, frag, _, counts, _ = state.columns(every)
    chosen = np.array([f in selected for f in names], dtype=bool)[frag]  # per fragment, then per entry
    ids = np.array(every, dtype=object)[chosen].tolist()
    rows_of = counts[chosen].tolist()
    moved = 0
    batch: list[str] = []
    batch_rows = 0
    target_rows = max(1, int(policy.target_fragment_mb * 1e6 // row_bytes))
    for i, vid in enumerate(ids):
        batch.append(vid)
        batch_rows += rows_of[i]
        if batch_rows >= target_rows or i == len(ids) - 1:
            moved += _rewrite(fs, name, kind, state, batch)
            batch, batch_rows = [], 0
    deleted, retained = vacuum(fs, name, policy)
    after = len(catalog.state().live_rows())
    return CompactionReport(modality=name, fragments_before=before, fragments_after=after,
                            entries_moved=moved, fragments_deleted=deleted, fragments_retained=retained,
                            seconds=time.perf_counter() - started)


def _rewrite(fs: FeatureStore, name: str, kind: Any, state: CatalogState, ids: list[str]) -> int:
    packed = fs.load(name, ids)
    names, frag, start, counts, has_mask = state.columns(ids)
    columns = {"values": packed.values, **packed.row_arrays}
    if has_mask.any():
        columns["mask"] = packed.mask
    empty: dict[str, Any] = {}
    info = write_columns(fs.keys, name, kind, columns,
                         list(zip(ids, counts.tolist(), has_mask.tolist(), itertools.repeat(empty),
                                  itertools.repeat(empty), strict=False)), prefix="c")
    # Source facts and attrs left out (null): the record moves rows, each entry keeps its own.
    record = {"op": "compact", "fragments": {info.fragment_id: info.n_rows},
              "entries": [[r.video_id, info.fragment_id, r.start, r.n_rows, r.has_mask, None, None]
                          for r in info.entries],
              "expect": [[names[f], s] for f, s in zip(frag.tolist(), start.tolist(), strict=True)]}
    fs.commit_log(name).commit(record)
    return len(ids)


def vacuum(fs: FeatureStore, name: str, policy: CompactionPolicy) -> tuple[int, int]:
    """Delete retired fragments older than the retention time (then un-list them) and old orphans.

    Newly retired fragments are marked with the time first. Returns (fragments deleted, retired ones
    retained). Run under the modality's build lock.
    """
    catalog = fs.commit_log(name)
    state = catalog.state()
    retired = state.retired()
    now = time.time()
    unmarked = {f: now for f in retired if f not in state.retired_at}
    if unmarked:
        # Checkpointed: it follows a compaction's commits, which fresh readers then need not replay.
        state = catalog.commit({"op": "retire", "retired": unmarked}, checkpoint=True)
    due = [f for f in retired if now - state.retired_at[f] >= policy.retain_s]
    fs.keys.delete_trees(f"{name}/{FRAGMENTS_GROUP}/{fragment}" for fragment in due)
    if due:
        catalog.commit({"op": "purge", "purged": due}, checkpoint=True)
    known = set(catalog.state().fragment_rows)
    pending = fs.modality_attrs(name).get(REBUILD_ATTR)
    if isinstance(pending, dict):  # a rebuild in progress owns fragments the live catalog does not list
        from affectcache.store.format.catalog import Catalog

        known |= set(Catalog(fs.keys, name, str(pending.get("generation"))).state().fragment_rows)
    now = time.time()
    orphans = [f for f in fs.keys.list(f"{name}/{FRAGMENTS_GROUP}")
               if f != "zarr.json" and f not in known and now - fragment_time_s(f) >= policy.orphan_age_s]
    fs.keys.delete_trees(f"{name}/{FRAGMENTS_GROUP}/{fragment}" for fragment in orphans)
    return len(due) + len(orphans), len(retired) - len(due)
