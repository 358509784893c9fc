"""Coverage and staleness of every modality in a store (what ``affectcache status`` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affectcache.store.zarr_store import FeatureStore, label_modality

if TYPE_CHECKING:
    from affectcache.extractors.core.records import MediaItem
    from affectcache.store.manifest import Manifest


@dataclass(frozen=True, kw_only=True)
class ModalityStatus:
    """Coverage of one modality (or label track)."""

    name: str
    """Store group name (``mfcc``, ``labels/valence``)."""
    extractor: str
    """Extractor that wrote it (``labels`` for label tracks)."""
    version: str
    """Extractor version."""
    kind: str
    """Modality kind (frame / segment / text / clip)."""
    fingerprint: str
    """Config fingerprint."""
    complete: int
    """Entries with the commit marker."""
    incomplete: int
    """Entries started but never committed (always 0 since store format 2: an uncommitted fragment
    is invisible, and compaction deletes it)."""
    failed: int
    """Items with a failure record (not-applicable records excluded)."""
    missing: int | None
    """Manifest items with neither a complete entry nor a failure record (None without a manifest):
    each item is counted once, as complete, failed, not applicable or missing."""
    stale: dict[str, str] = field(default_factory=dict)
    """Complete entries that a build would redo, with the reason."""
    warnings: dict[str, str] = field(default_factory=dict)
    """Complete entries the extractor flagged (e.g. no face in any frame), with its warning."""
    rows: int = 0
    """Total rows over complete entries."""
    not_applicable: int = 0
    """Items the modality does not apply to (no audio track, a required modality failed)."""


def store_status(fs: FeatureStore, manifest: Manifest | None = None) -> list[ModalityStatus]:
    """Status of every modality and label track of ``fs``, against ``manifest`` when given."""
    items: dict[str, MediaItem] = {it.video_id: it for it in manifest} if manifest is not None else {}
    names = fs.modalities() + [label_modality(t) for t in fs.label_tracks()]
    out = []
    for name in names:
        prov = fs.provenance(name)
        state = fs.catalog(name)  # one catalog read: no per-entry metadata
        complete = state.videos()
        complete_set = set(complete)
        failures = {vid: rec for vid, rec in state.failures.items() if vid not in complete_set}
        stale: dict[str, str] = {}
        for up_name, up_fp in (prov.get("upstream") or {}).items():
            current = _fingerprint_or_none(fs, up_name)
            if current != up_fp:
                why = (f"upstream {up_name} was rebuilt (fingerprint {str(up_fp)[:12]} -> "
                       f"{str(current)[:12]}): run `affectcache rebuild {name} -s STORE -m MANIFEST`"
                       if current else f"upstream {up_name} was deleted")
                stale.update(dict.fromkeys(complete, why))
        if items:
            changed = state.changed_sources({vid: items[vid].source_info() for vid in items if vid in state})
            for vid in sorted(changed):
                stale.setdefault(vid, "source media or clip bounds changed")
        out.append(ModalityStatus(
            name=name, extractor=str(prov.get("extractor")), version=str(prov.get("version")),
            kind=str(prov.get("modality_kind")), fingerprint=str(prov.get("config_fingerprint")),
            complete=len(complete), incomplete=0,
            failed=sum(not rec.get("not_applicable") for rec in failures.values()),
            not_applicable=sum(bool(rec.get("not_applicable")) for rec in failures.values()),
            missing=len(items.keys() - complete_set - failures.keys()) if manifest is not None else None,
            stale=stale, rows=state.total_rows(), warnings=state.warnings()))
    return out


def _fingerprint_or_none(fs: FeatureStore, name: str) -> Any:
    return fs.provenance(name).get("config_fingerprint") if fs.has_modality(name) else None


@dataclass(frozen=True, kw_only=True)
class GroupCoverage:
    """Coverage of one modality (or label track) over the manifest items of one corpus and split."""

    name: str
    """Store group name (``mfcc``, ``labels/valence``)."""
    corpus: str
    """The items' ``corpus`` (``-`` when the manifest gives none)."""
    split: str
    """The items' ``split`` (``-`` when the manifest gives none)."""
    complete: int
    """Items of this corpus and split with a complete entry."""
    total: int
    """Items of this corpus and split in the manifest."""


def coverage_by_split(fs: FeatureStore, manifest: Manifest) -> list[GroupCoverage]:
    """Per modality and label track: complete entries per manifest corpus and split.

    Label tracks are not expected for every item (test splits usually have none), so a track's
    coverage below the item count is information, not an error.
    """
    groups: dict[tuple[str, str], set[str]] = {}
    for item in manifest:
        groups.setdefault((item.corpus or "-", item.split or "-"), set()).add(item.video_id)
    names = fs.modalities() + [label_modality(t) for t in fs.label_tracks()]
    out = []
    for name in names:
        complete = set(fs.videos(name))
        for (corpus, split), ids in groups.items():
            out.append(GroupCoverage(name=name, corpus=corpus, split=split, complete=len(ids & complete),
                                     total=len(ids)))
    return out


def format_coverage(rows: list[GroupCoverage]) -> str:
    """A fixed-width table of :func:`coverage_by_split` rows."""
    lines = [f"{'modality':<22}{'corpus':<14}{'split':<8}{'complete':>9}{'items':>8}{'coverage':>10}"]
    for r in rows:
        share = f"{100.0 * r.complete / r.total:.1f}%" if r.total else "-"
        lines.append(f"{r.name:<22}{r.corpus:<14}{r.split:<8}{r.complete:>9}{r.total:>8}{share:>10}")
    return "\n".join(lines)
