"""Upgrade stores of format 1 (one Zarr group per video entry) to format 2 (fragments + catalog), in place.

A format-1 modality is recognised by provenance at its group without a catalog pointer; every reader
refuses it (:class:`~affectcache.store.errors.OldLayoutError`) rather than guess. Per modality, under
its build lock:

1. a new catalog generation is created and named in the group's ``affectcache_upgrade`` attribute (so
   a rerun resumes it), while the old entries stay readable by the old version;
2. complete old entries are copied in batches into fragments, each batch committed to the new catalog
   (a rerun skips what is committed; incomplete old entries were invisible and are not copied);
3. the old failure records are committed, then the group's ``zarr.json`` switches to the new catalog in
   one atomic write; only then are the per-video groups and the old failure records deleted (a rerun
   finishes an interrupted cleanup).

The store root's ``layout`` becomes 2 once no format-1 modality is left.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.records import ROW_KEYS, FeatureArray
from affectcache.store.errors import StoreError
from affectcache.store.format.catalog import LOG_GROUP, Catalog
from affectcache.store.format.fragments import FRAGMENTS_GROUP, group_bytes, write_fragment
from affectcache.store.lock import ModalityLock
from affectcache.store.zarr_store import (
    CATALOG_ATTR,
    LAYOUT_VERSION,
    PRIVATE_GROUP,
    FeatureStore,
    label_modality,
    new_generation,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

UPGRADE_ATTR = "affectcache_upgrade"
_NEW_CHILDREN = (FRAGMENTS_GROUP, LOG_GROUP, "zarr.json")


@dataclass(frozen=True, kw_only=True)
class UpgradeReport:
    """What upgrading one modality did."""

    modality: str
    """The modality."""
    converted: int
    """Entries copied into fragments by this run."""
    skipped_incomplete: int
    """Old entries without the commit marker (invisible before too; not copied)."""
    seconds: float
    """Wall time."""

    def summary(self) -> str:
        """One line for the CLI."""
        return (f"{self.modality}: {self.converted} entries converted, {self.skipped_incomplete} incomplete "
                f"ones dropped in {self.seconds:.1f} s")


def needs_upgrade(fs: FeatureStore, name: str) -> bool:
    """Whether ``name`` still has (some of) the per-video layout."""
    attrs = fs.modality_attrs(name)
    if "affectcache" not in attrs:
        return False
    if CATALOG_ATTR not in attrs:
        return True
    return bool(_old_entry_names(fs, name))  # switched, but the old groups were not all deleted yet


def upgrade_store(fs: FeatureStore, *, batch_mb: float = 256.0) -> list[UpgradeReport]:
    """Convert every format-1 modality and label track of ``fs`` in place (resumable)."""
    names = fs.modalities() + [label_modality(t) for t in fs.label_tracks()]
    reports = []
    for name in names:
        if needs_upgrade(fs, name):
            with ModalityLock(fs, name):
                reports.append(upgrade_modality(fs, name, batch_mb=batch_mb))
    failures_dir = f"{PRIVATE_GROUP}/failures"
    if fs.keys.get(f"{failures_dir}/zarr.json") is not None:
        fs.keys.delete_tree(failures_dir)
    root: dict[str, Any] = dict(fs._root.attrs.asdict().get("affectcache") or {})  # type: ignore[arg-type]
    if root.get("layout") != LAYOUT_VERSION:
        fs._root.update_attributes({"affectcache": {**root, "layout": LAYOUT_VERSION}})
    return reports


def _old_entry_names(fs: FeatureStore, name: str) -> list[str]:
    return sorted(k for k in fs.keys.list(name) if k not in _NEW_CHILDREN and not k.startswith("."))


def upgrade_modality(fs: FeatureStore, name: str, *, batch_mb: float = 256.0) -> UpgradeReport:
    """Convert one modality (call under its build lock)."""
    started = time.perf_counter()
    attrs = fs.modality_attrs(name)
    prov = dict(attrs["affectcache"])
    kind = prov["modality_kind"]
    old_names = _old_entry_names(fs, name)
    if CATALOG_ATTR in attrs:  # converted earlier; finish deleting the old groups
        fs.keys.delete_trees(f"{name}/{k}" for k in old_names)
        return UpgradeReport(modality=name, converted=0, skipped_incomplete=0,
                             seconds=time.perf_counter() - started)
    for reserved in (FRAGMENTS_GROUP, LOG_GROUP):
        meta = fs.keys.get(f"{name}/{reserved}/zarr.json")
        if meta is not None and "complete" in (json.loads(meta).get("attributes") or {}):
            raise StoreError(f"{name}: an entry is named {reserved!r}, which format 2 reserves; rename it "
                             "(copy the store with the old affectcache, changing that id) and upgrade again")
    pending = attrs.get(UPGRADE_ATTR)
    if isinstance(pending, dict) and "generation" in pending:
        generation = str(pending["generation"])
    else:
        generation = new_generation()
        catalog = Catalog(fs.keys, name, generation)
        catalog.create()
        fs.keys.put_many([(f"{name}/{FRAGMENTS_GROUP}/zarr.json", group_bytes({}))])
        fs.keys.put(f"{name}/zarr.json", group_bytes({**attrs, UPGRADE_ATTR: {"generation": generation}}))
    catalog = Catalog(fs.keys, name, generation)
    done = set(catalog.state().videos())
    converted = skipped = 0
    batch: list[tuple[FeatureArray, Mapping[str, Any]]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if batch:
            catalog.add([write_fragment(fs.keys, name, kind, batch)], op="upgrade")
            batch.clear()
            size = 0

    for vid in old_names:
        if vid in done:
            continue
        old = _read_old_entry(fs, name, vid, kind)
        if old is None:
            skipped += 1
            continue
        batch.append(old)
        converted += 1
        size += old[0].values.nbytes
        if size >= batch_mb * 1e6:
            flush()
    flush()
    failures = _old_failures(fs, name)
    if failures:
        catalog.add(failures=failures, op="upgrade")
    fs.keys.put(f"{name}/zarr.json", group_bytes({
        "affectcache": prov, CATALOG_ATTR: {"format": LAYOUT_VERSION, "generation": generation}}))
    fs.keys.delete_trees(f"{name}/{k}" for k in old_names)
    logger.info("upgraded %s: %d entries", name, converted)
    return UpgradeReport(modality=name, converted=converted, skipped_incomplete=skipped,
                         seconds=time.perf_counter() - started)


def _read_old_entry(fs: FeatureStore, name: str, vid: str,
                    kind: Any) -> tuple[FeatureArray, Mapping[str, Any]] | None:
    """A complete format-1 entry and its source facts; None when incomplete or unreadable."""
    import zarr

    try:
        group = fs._root[f"{name}/{vid}"]
        attrs = group.attrs.asdict()
    except (KeyError, ValueError, TypeError):
        return None
    if not isinstance(group, zarr.Group) or attrs.get("complete") is not True:
        return None
    arrays: dict[str, Any] = {}
    for key in ("values", *ROW_KEYS[kind], "mask"):
        if key in group:
            node = group[key]
            if isinstance(node, zarr.Array):
                arrays[key] = node[...]
    item_attrs: dict[str, Any] = json.loads(json.dumps(attrs.get("attrs") or {}))
    source: dict[str, Any] = json.loads(json.dumps(attrs.get("source") or {}))
    return FeatureArray(video_id=vid, kind=kind, attrs=item_attrs, **arrays), source


def _old_failures(fs: FeatureStore, name: str) -> dict[str, dict[str, Any]]:
    raw = fs.keys.get(f"{PRIVATE_GROUP}/failures/{name}/zarr.json")
    if raw is None:
        return {}
    found: dict[str, dict[str, Any]] = (json.loads(raw).get("attributes") or {}).get("failures") or {}
    return found
