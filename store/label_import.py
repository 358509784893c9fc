"""Your own labels into a store: a CSV of per-frame or timed values becomes a ``labels/<track>`` track.

The CSV has a header with ``video_id``, either ``frame`` (0-based video frame) or ``time_s`` (seconds
from the media file's start), and a value column (``value`` by default). Every problem is reported with
the file and line, as for manifests: an id that is not in the manifest, a number that does not parse, a
frame or time given twice for one video. Any error refuses the import and nothing is written.

Per-frame labels are stored on the video's frame grid (rows ``0 .. last frame``, ``time_s = frame / fps``
with the manifest's ``fps`` column or the probed frame rate; frames without a value are masked). Timed
labels keep their own times (sorted). An empty value cell is a masked row.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.core.registry import did_you_mean
from affectcache.extractors.media.probe import probe
from affectcache.store.corpora.base import CorpusError, CorpusImport, ProblemLog, TrackEntry, parse_number
from affectcache.store.zarr_store import FeatureStore, label_modality

if TYPE_CHECKING:
    from affectcache.extractors.core.records import MediaItem
    from affectcache.store.manifest import Manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LabelImport:
    """What :func:`import_labels` wrote."""

    track: str
    """Store group written (``labels/<track>``)."""
    videos: int
    """Entries written (one per video)."""
    rows: int
    """Value rows read from the file."""


def read_label_csv(path: str | Path, track: str, manifest: Manifest, *,
                   value_column: str = "value") -> CorpusImport:
    """Read and validate a label CSV against the manifest (nothing is written).

    Returns:
        The track entries and every problem found (errors refuse the import).
    """
    file = Path(path)
    log = ProblemLog(file.parent)
    items = {item.video_id: item for item in manifest}
    rows: dict[str, dict[float, float | None]] = {}
    clock = "frame"
    try:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            clock = "frame" if "frame" in header else "time_s"
            needed = ["video_id", clock, value_column]
            missing = [c for c in needed if c not in header]
            if missing:
                log.error(file, 1, f"missing column(s) {missing}: the header needs video_id, frame or "
                                   f"time_s, and {value_column!r} (--value-column); found {header}")
                return _result(track, [], log)
            for line, row in enumerate(reader, start=2):
                vid = (row.get("video_id") or "").strip()
                if vid not in items:
                    log.error(file, line, f"video_id {vid!r} is not in the manifest"
                                          f"{did_you_mean(vid, list(items))}")
                    continue
                at = parse_number(row.get(clock) or "")
                if at is None or at < 0 or (clock == "frame" and at != int(at)):
                    log.error(file, line, f"{clock} {row.get(clock)!r} is not a "
                                          f"{'frame number' if clock == 'frame' else 'time in seconds'} >= 0")
                    continue
                raw = (row.get(value_column) or "").strip()
                value = parse_number(raw) if raw else None
                if raw and value is None:
                    log.error(file, line, f"{value_column} {raw!r} is not a number (empty = no label)")
                    continue
                per_video = rows.setdefault(vid, {})
                if at in per_video:
                    log.error(file, line, f"{vid}: {clock} {row.get(clock)} is given twice")
                    continue
                per_video[at] = value
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.error(file, None, f"cannot read the CSV: {exc}")
        return _result(track, [], log)
    entries = []
    make_entry = _frame_entry if clock == "frame" else _timed_entry
    for vid, values in rows.items():
        entry = make_entry(track, items[vid], values, file.name, log)
        if entry is not None:
            entries.append(entry)
    if not entries and not log.problems:
        log.error(file, None, "no label rows")
    return _result(track, entries, log)


def _result(track: str, entries: list[TrackEntry], log: ProblemLog) -> CorpusImport:
    return CorpusImport(corpus=f"labels:{track}", items=(), tracks=tuple(entries),
                        problems=tuple(log.problems))


def _frame_entry(track: str, item: MediaItem, values: dict[float, float | None], source: str,
                 log: ProblemLog) -> TrackEntry | None:
    fps = _fps(item, log)
    if fps is None:
        return None
    n = int(max(values)) + 1
    grid = np.zeros(n, np.float32)
    valid = np.zeros(n, bool)
    for frame, value in values.items():
        if value is not None:
            grid[int(frame)] = value
            valid[int(frame)] = True
    return TrackEntry(track=track, video_id=item.video_id, values=grid, valid=valid,
                      time_s=np.arange(n, dtype=np.float64) / fps, rate_hz=fps, source_file=source)


def _timed_entry(track: str, item: MediaItem, values: dict[float, float | None], source: str,
                 log: ProblemLog) -> TrackEntry | None:
    times = np.array(sorted(values), dtype=np.float64)
    vals = np.array([values[t] if values[t] is not None else 0.0 for t in times], np.float32)
    valid = np.array([values[t] is not None for t in times], bool)
    rate = float(1.0 / np.median(np.diff(times))) if times.size > 1 else 0.0
    return TrackEntry(track=track, video_id=item.video_id, values=vals, valid=valid, time_s=times,
                      rate_hz=rate, source_file=source)


def _fps(item: MediaItem, log: ProblemLog) -> float | None:
    given = item.labels.get("fps")
    if isinstance(given, int | float) and not isinstance(given, bool) and given > 0 and math.isfinite(given):
        return float(given)
    try:
        fps = probe(item.path).fps
    except BadMediaError as exc:
        log.error(item.path, None, f"{item.video_id}: per-frame labels need the frame rate: {exc}")
        return None
    if not fps:
        log.error(item.path, None, f"{item.video_id}: no frame rate (give an fps column in the manifest)")
        return None
    return float(fps)


def import_labels(store: FeatureStore | str | Path, track: str, path: str | Path, manifest: Manifest, *,
                  value_column: str = "value", strict: bool = False) -> LabelImport:
    """Validate a label CSV and write it as ``labels/<track>`` (refused as a whole on any error).

    Raises:
        CorpusError: Problems in the file (each named with its line); nothing was written.
        ProvenanceMismatchError: The store holds this track from another source.
    """
    result = read_label_csv(path, track, manifest, value_column=value_column)
    blocking = result.errors + (result.warnings if strict else [])
    if blocking:
        listed = "\n".join(f"  - {p}" for p in blocking[:20])
        more = f"\n  ... and {len(blocking) - 20} more" if len(blocking) > 20 else ""
        raise CorpusError(f"labels {path}: {len(blocking)} problem(s), nothing was written:\n{listed}{more}")
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    items = {item.video_id: item for item in manifest}
    name = fs.init_label_track(track, source=f"file:{Path(path).name}",
                               description=f"{value_column} column of {Path(path).name}")
    for entry in result.tracks:
        fs.write(name, entry.to_feature_array(), source=items[entry.video_id].source_info())
    logger.info("%s: %d videos from %s", label_modality(track), len(result.tracks), path)
    return LabelImport(track=name, videos=len(result.tracks), rows=sum(len(e.values) for e in result.tracks))
