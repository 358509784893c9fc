"""Compaction: rewrite a modality's live rows into few large fragments and delete the garbage.

Builds leave one fragment per task (small for utterance-level corpora), and ``--only`` rebuilds,
media-changed items and deletes leave superseded rows behind. Compaction copies the live rows of the
small or partly-dead fragments, in video-id order, into fragments of about
:attr:`CompactionPolicy.target_fragment_mb`, then commits each new fragment with a record whose entries
apply only if they still point where compaction read them (an entry rebuilt meanwhile keeps its new
rows). Only after that are fragments no entry points at (*retired*) deleted, and then un-listed by a
``purge`` record. Readers see the same data before, during and after (a reader that lost a fragment to
the purge re-reads the catalog and finds the copy); a crash at any point loses nothing: before a commit
the new fragment is an unreferenced orphan, after it the old one is retired garbage for the next run.

Run it under the modality's build lock (the build runner and ``affectcache store compact`` do).
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        problems = [f"{name} must be > 0, got {getattr(self, name)}" for name in
                    ("min_small_fragments", "small_fragment_mb", "target_fragment_mb")
                    if getattr(self, name) <= 0]
        if not 0 < self.garbage_share <= 1:
            problems.append(f"garbage_share must be in (0, 1], got {self.garbage_share}")
        if self.orphan_age_s < 0:
            problems.append(f"orphan_age_s must be >= 0, got {self.orphan_age_s}")
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
    seconds: float
    """Wall time."""

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (f"{self.modality}: {self.fragments_before} -> {self.fragments_after} fragments, "
                f"{self.entries_moved} entries moved, {self.fragments_deleted} fragments deleted "
                f"in {self.seconds:.1f} s")


def needs_compaction(fs: FeatureStore, name: str, policy: CompactionPolicy) -> bool:
    """Whether ``name`` has many small fragments or much garbage (the build's automatic trigger)."""
    state = fs.catalog(name)
    live = state.live_rows()
    row_bytes = max(1, fs.row_bytes(name))
    small = sum(1 for f in live if state.fragment_rows[f] * row_bytes < policy.small_fragment_mb * 1e6)
    stored = sum(state.fragment_rows.values())
    garbage = stored - sum(live.values())
    return small >= policy.min_small_fragments or (stored > 0 and garbage / stored >= policy.garbage_share)


def maybe_compact(fs: FeatureStore, name: str, policy: CompactionPolicy) -> CompactionReport | None:
    """Compact ``name`` when :func:`needs_compaction` says so (called at the end of a build)."""
    if not fs.has_modality(name) or not needs_compaction(fs, name, policy):
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
    chosen = np.isin(np.array(names, dtype=object)[frag] if len(frag) else np.zeros(0, object),
                     np.array(sorted(selected), dtype=object))
    ids = [every[i] for i in np.flatnonzero(chosen).tolist()]
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
    deleted = _delete_garbage(fs, name, policy)
    after = len(catalog.state().live_rows())
    return CompactionReport(modality=name, fragments_before=before, fragments_after=after,
                            entries_moved=moved, fragments_deleted=deleted,
                            seconds=time.perf_counter() - started)


def _rewrite(fs: FeatureStore, name: str, kind: Any, state: CatalogState, ids: list[str]) -> int:
    packed = fs.load(name, ids)
    entries = [state[v] for v in ids]
    columns = {"values": packed.values, **packed.row_arrays}
    if any(e.has_mask for e in entries):
        columns["mask"] = packed.mask
    info = write_columns(fs.keys, name, kind, columns,
                         [(v, e.n_rows, e.has_mask, e.source, e.attrs)
                          for v, e in zip(ids, entries, strict=True)], prefix="c")
    record = {"op": "compact", "fragments": {info.fragment_id: info.n_rows},
              "entries": [[r.video_id, info.fragment_id, r.start, r.n_rows, r.has_mask, dict(r.source),
                           dict(r.attrs)] for r in info.entries],
              "expect": [[e.fragment, e.start] for e in entries]}
    fs.commit_log(name).commit(record)
    return len(ids)


def _delete_garbage(fs: FeatureStore, name: str, policy: CompactionPolicy) -> int:
    """Delete retired fragments (then un-list them) and old orphans; the number deleted."""
    catalog = fs.commit_log(name)
    state = catalog.state()
    retired = state.retired()
    fs.keys.delete_trees(f"{name}/{FRAGMENTS_GROUP}/{fragment}" for fragment in retired)
    if retired:
        catalog.commit({"op": "purge", "purged": retired}, checkpoint=True)
    known = set(catalog.state().fragment_rows)
    pending = fs.modality_attrs(name).get(REBUILD_ATTR)
    if isinstance(pending, dict):  # a rebuild in progress owns fragments the live catalog does not list
        from affectcache.store.format.catalog import Catalog

        known |= set(Catalog(fs.keys, name, str(pending.get("generation"))).state().fragment_rows)
    now = time.time()
    orphans = [f for f in fs.keys.list(f"{name}/{FRAGMENTS_GROUP}")
               if f != "zarr.json" and f not in known and now - fragment_time_s(f) >= policy.orphan_age_s]
    fs.keys.delete_trees(f"{name}/{FRAGMENTS_GROUP}/{fragment}" for fragment in orphans)
    return len(retired) + len(orphans)
