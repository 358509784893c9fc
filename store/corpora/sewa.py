"""SEWA (AVEC 2019 Cross-cultural Emotion Sub-challenge release) corpus adapter: 10 Hz label traces.

Reads the ``<Partition>_<Culture>_<NN>.csv`` label files of ``--root``: the release folder (only its
``labels/`` is read; the feature folders beside it use the same file names) or ``labels/`` itself:
semicolon-separated, header ``name;timestamp;arousal;valence;liking``, ``name`` quoted like
``'Devel_DE_01'``, one row every 0.1 s. Each file's recording ``<name>.<video suffix>`` is looked up
under ``--media``. Partitions map to splits (``Train`` → train, ``Devel`` → val, ``Test`` → test); the
culture goes into the ``culture`` label column.

Label tracks ``labels/arousal``, ``labels/valence`` and ``labels/liking`` keep the native 10 Hz rows:
``frame`` is the row index, ``time_s`` the file's timestamp, and the entry attrs record ``rate_hz``.
Empty cells (unreleased test labels) are masked without a report; values outside [-1, 1] are reported
and masked. A file with no value at all gives a manifest row without tracks.
"""

from __future__ import annotations

import csv
import logging
import re
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    ProblemLog,
    TrackEntry,
    parse_number,
    register_corpus,
)

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

logger = logging.getLogger(__name__)

FILE_PATTERN = re.compile(r"^(?P<partition>Train|Devel|Test)_(?P<culture>[A-Z]{2})_(?P<num>\d+)\.csv$")
PARTITIONS: dict[str, str] = {"Train": "train", "Devel": "val", "Test": "test"}
HEADER: tuple[str, ...] = ("name", "timestamp", "arousal", "valence", "liking")
TRACKS: tuple[str, ...] = ("arousal", "valence", "liking")
RATE_HZ = 10.0
STEP_TOLERANCE_S = 1e-3
"""How far a timestamp step may differ from 0.1 s before the file is reported as irregular."""


@register_corpus
class SewaAdapter(CorpusAdapter):
    """SEWA AVEC 2019 label files → 10 Hz arousal / valence / liking tracks with times."""

    name: ClassVar[str] = "sewa"
    summary: ClassVar[str] = "SEWA (AVEC 2019 CES): 10 Hz arousal, valence, liking traces"
    track_descriptions: ClassVar[dict[str, str]] = {
        t: f"SEWA (AVEC 2019 CES) {t} trace at 10 Hz, roughly in [-1, 1]" for t in TRACKS}

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read every label file; see the module docstring."""
        reading = CorpusReading(self.name, root, media, track_descriptions=self.track_descriptions)
        log = reading.log
        # The release root holds feature folders (visual_features_xbow/, ...) whose CSVs carry the very
        # same <Part>_<CC>_<NN> names: read only the label folder, given or found under the root.
        label_dir = root / "labels" if (root / "labels").is_dir() else root
        files = sorted(p for p in label_dir.rglob("*.csv") if FILE_PATTERN.match(p.name))
        if not files:
            return reading.refuse(label_dir, "no <Train|Devel|Test>_<CC>_<NN>.csv label files found; give "
                                             "the release folder (holding labels/) or its labels/ folder as "
                                             "--root")
        for path in files:
            match = FILE_PATTERN.match(path.name)
            if match is None:  # cannot happen: files were filtered by the pattern
                continue
            vid = path.stem
            if not reading.claim(vid, path, None, what="recording"):
                continue
            rel = log.name(path)
            reading.sources.append(rel)
            parsed = _parse_file(path, vid, log)
            if parsed is None:
                continue
            time_s, values, valid = parsed
            media_path = reading.find_media(vid, path, None, what="label file")
            if media_path is None:
                continue
            reading.items.append(MediaItem(
                video_id=vid, path=str(media_path), split=PARTITIONS[match["partition"]], corpus=self.name,
                labels={"culture": match["culture"], "n_label_rows": int(time_s.shape[0])}))
            for k, track in enumerate(TRACKS):
                if valid[:, k].any():
                    reading.tracks.append(TrackEntry(track=track, video_id=vid, values=values[:, k],
                                             valid=valid[:, k].copy(), time_s=time_s, rate_hz=RATE_HZ,
                                             source_file=rel))
        return reading.result()


def _parse_file(path: Path, vid: str, log: ProblemLog) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.bool_]] | None:
    """``(time_s, values (n, 3), valid (n, 3))``; None (with an error recorded) when unusable."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(enumerate(csv.reader(fh, delimiter=";"), start=1))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.error(path, None, f"cannot read ({type(exc).__name__}: {exc})")
        return None
    rows = [(n, r) for n, r in rows if any(cell.strip() for cell in r)]
    if not rows or tuple(c.strip().strip("'\"").lower() for c in rows[0][1]) != HEADER:
        log.error(path, 1, f"expected the header {';'.join(HEADER)!r}, found "
                           f"{';'.join(rows[0][1]) if rows else 'an empty file'!r}")
        return None
    body = rows[1:]
    times = np.zeros(len(body), dtype=np.float64)
    values = np.zeros((len(body), len(TRACKS)), dtype=np.float32)
    valid = np.zeros((len(body), len(TRACKS)), dtype=bool)
    errors_before = sum(p.severity == "error" for p in log.problems)
    for row, (line, cells) in enumerate(body):
        if len(cells) != len(HEADER):
            log.error(path, line, f"expected {len(HEADER)} ';'-separated fields, got {len(cells)}")
            continue
        name = cells[0].strip().strip("'\"")
        if name != vid:
            log.error(path, line, f"name {name!r} differs from the file's recording {vid!r}")
            continue
        stamp = parse_number(cells[1])
        if stamp is None or stamp < 0:
            log.error(path, line, f"timestamp {cells[1]!r} is not a number of seconds >= 0")
            continue
        if row and stamp < times[row - 1]:
            log.error(path, line, f"timestamp {stamp:g} goes back in time (previous {times[row - 1]:g})")
            continue
        times[row] = stamp
        for k, track in enumerate(TRACKS):
            cell = cells[2 + k].strip()
            if not cell:
                continue  # unreleased label: masked
            value = parse_number(cell)
            if value is None:
                log.error(path, line, f"{track} {cell!r} is not a number")
            elif not -1.0 <= value <= 1.0:
                log.warning(path, line, f"{track} {value:g} outside [-1, 1]; row masked for {track}")
            else:
                values[row, k], valid[row, k] = value, True
    if sum(p.severity == "error" for p in log.problems) > errors_before:
        return None
    steps = np.diff(times)
    irregular = np.flatnonzero(np.abs(steps - 1.0 / RATE_HZ) > STEP_TOLERANCE_S)
    if irregular.size:
        first = int(irregular[0])
        log.warning(path, body[first + 1][0],
                    f"{irregular.size} timestamp step(s) differ from 0.1 s (first: {times[first]:g} -> "
                    f"{times[first + 1]:g}); times kept as given")
    return times, values, valid
