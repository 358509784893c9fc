"""The ABAW valence-arousal submission file, from a prediction modality in the store.

Format (``formats.md`` B): a CSV-style ``.txt`` with the header ``image_location,valence,arousal`` and one
row per row of the organisers' template, in the template's order; ``image_location`` is
``<video>/<frame:05d>.jpg`` with 1-based frame numbers (our clocks are 0-based: frame ``f`` is image
``f + 1``). Every template frame must have a prediction (an error lists the missing ones); values are
clamped to [−1, 1].

For a mock submission (the demo), :func:`write_abaw_template` writes a template in the organisers'
shape for chosen videos, and :func:`check_submission` checks a submission against its template.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from affectcache.extractors.core.atomic import atomic_write_text
from affectcache.store.errors import StoreError

if TYPE_CHECKING:
    import numpy.typing as npt

    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

HEADER = ("image_location", "valence", "arousal")
SHOWN_MISSING = 10
"""Missing frames named in the error (the count is always given)."""
TEMPLATE_PLACEHOLDER = "0.0,0.0"
"""Values in a written template's rows (the organisers' files carry placeholders too)."""


@dataclass(frozen=True, kw_only=True)
class SubmissionReport:
    """What :func:`write_abaw_submission` wrote."""

    path: Path
    """The submission file."""
    rows: int
    """Rows written (= template rows)."""
    videos: int
    """Distinct videos."""
    clamped: int
    """Values that were outside [−1, 1]."""


def _parse_location(location: str, line: int, template: Path) -> tuple[str, int]:
    path = PurePosixPath(location.strip())
    if len(path.parts) != 2 or path.suffix.lower() != ".jpg" or not path.stem.isdigit():
        raise StoreError(f"{template}:{line}: image_location {location!r} is not <video>/<frame>.jpg")
    return path.parts[0], int(path.stem)


def read_template(template: str | Path) -> list[tuple[str, int]]:
    """``(video, frame number)`` of every template row, in order (1-based frame numbers)."""
    path = Path(template)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not header or header[0].strip() != "image_location":
            raise StoreError(f"{path}: expected a header starting with image_location, got {header}")
        return [_parse_location(row[0], i + 2, path) for i, row in enumerate(reader) if row]


def write_abaw_submission(fs: FeatureStore, modality: str, template: str | Path, out: str | Path, *,
                          columns: tuple[str, str] = ("valence", "arousal")) -> SubmissionReport:
    """Look up every template frame in ``modality`` and write the submission (see the module docstring).

    Raises:
        StoreError: The template is malformed, the modality lacks the columns, or template frames have no
            prediction (all of them counted, the first few named).
    """
    rows = read_template(template)
    videos = list(dict.fromkeys(v for v, _ in rows))
    available = set(fs.videos(modality))
    lookup: dict[str, tuple[dict[int, int], npt.NDArray[np.float64]]] = {}
    missing: list[str] = []
    loaded = fs.load(modality, [v for v in videos if v in available])
    for vid in videos:
        if vid not in loaded:
            continue
        entry = loaded.entry(vid)
        names = list(entry.attrs.get("columns") or [])
        try:
            cols = [names.index(c) for c in columns]
        except ValueError:
            raise StoreError(f"{modality}/{vid} has columns {names[:4]}..., not {list(columns)}; pass a "
                             "prediction modality (affectcache predict)") from None
        frames = np.asarray(entry.frame, dtype=np.int64)
        values = np.asarray(entry.values, dtype=np.float64).reshape(frames.shape[0], -1)[:, cols]
        valid = np.ones(frames.shape[0], bool) if entry.mask is None else entry.mask
        lookup[vid] = ({int(f): i for i, f in enumerate(frames) if valid[i]}, values)
    out_values = np.zeros((len(rows), 2), dtype=np.float64)
    for r, (vid, number) in enumerate(rows):
        found = lookup.get(vid)
        idx = found[0].get(number - 1) if found is not None else None
        if idx is None or found is None:
            missing.append(f"{vid}/{number:05d}.jpg")
            continue
        out_values[r] = found[1][idx]
    if missing:
        shown = ", ".join(missing[:SHOWN_MISSING])
        absent = [v for v in videos if v not in lookup]
        more = " ..." if len(missing) > SHOWN_MISSING else ""
        named = f" ({', '.join(absent[:5])})" if absent else ""
        raise StoreError(f"{len(missing)} template frames have no prediction in {modality} ({shown}{more}); "
                         f"videos without any: {len(absent)}{named}. Predict those videos "
                         "(affectcache predict RUN ... --split test)")
    clamped = int((np.abs(out_values) > 1.0).sum())
    out_values = np.clip(out_values, -1.0, 1.0)
    buffer = io.StringIO()
    buffer.write(",".join(HEADER) + "\n")
    for (vid, number), (v, a) in zip(rows, out_values, strict=True):
        buffer.write(f"{vid}/{number:05d}.jpg,{v:.6f},{a:.6f}\n")
    atomic_write_text(out, buffer.getvalue())
    if clamped:
        logger.info("clamped %d values to [-1, 1]", clamped)
    return SubmissionReport(path=Path(out), rows=len(rows), videos=len(videos), clamped=clamped)


@dataclass(frozen=True, kw_only=True)
class SubmissionCheck:
    """What :func:`check_submission` verified."""

    rows: int
    """Rows, equal in number and order to the template's."""
    videos: int
    """Distinct videos."""
    value_range: tuple[float, float]
    """Smallest and largest value written (within [−1, 1])."""


def write_abaw_template(fs: FeatureStore, modality: str, videos: list[str], out: str | Path) -> Path:
    """A template in the organisers' shape: one ``<video>/<frame + 1:05d>.jpg`` row per stored frame of
    ``modality`` (e.g. a label track) for each of ``videos``, in that order, placeholder values.

    Raises:
        StoreError: ``modality`` has no entry for one of the videos, or is not frame-level.
    """
    available = set(fs.videos(modality))
    absent = [v for v in videos if v not in available]
    if absent:
        named = ", ".join(absent[:5])
        raise StoreError(f"{modality} has no entry for {len(absent)} template videos ({named}); build or "
                         "import it for those videos first")
    buffer = io.StringIO()
    buffer.write(",".join(HEADER) + "\n")
    for vid in videos:
        entry = fs.read(modality, vid)
        if entry.kind != "frame":
            raise StoreError(f"{modality}/{vid} is {entry.kind}-level; a template needs a frame modality")
        for frame in np.asarray(entry.frame, dtype=np.int64):
            buffer.write(f"{vid}/{int(frame) + 1:05d}.jpg,{TEMPLATE_PLACEHOLDER}\n")
    atomic_write_text(out, buffer.getvalue())
    return Path(out)


def check_submission(submission: str | Path, template: str | Path) -> SubmissionCheck:
    """Check a submission against its template: same header, same ``image_location`` rows in the same
    order, two finite values per row within [−1, 1].

    Raises:
        StoreError: The first problem found, with its line.
    """
    expected = read_template(template)
    path = Path(submission)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        raise StoreError(f"{path}: header must be {','.join(HEADER)}, got {rows[0] if rows else 'nothing'}")
    body = rows[1:]
    if len(body) != len(expected):
        raise StoreError(f"{path}: {len(body)} rows, the template {template} has {len(expected)}; write it "
                         "again from the template")
    values = np.zeros((len(body), 2), dtype=np.float64)
    for i, (row, (vid, number)) in enumerate(zip(body, expected, strict=True)):
        line = i + 2
        if _parse_location(row[0], line, path) != (vid, number):
            raise StoreError(f"{path}:{line}: {row[0]!r} where the template has {vid}/{number:05d}.jpg; rows "
                             "must follow the template's order")
        try:
            numbers = [float(x) for x in row[1:]]
        except ValueError:
            numbers = []
        if len(numbers) != len(HEADER) - 1:
            raise StoreError(f"{path}:{line}: expected two numbers after the image, got {row[1:]}")
        values[i] = numbers
    bad = ~np.isfinite(values) | (np.abs(values) > 1.0)
    if bad.any():
        line = int(np.argmax(bad.any(axis=1))) + 2
        raise StoreError(f"{path}:{line}: values must be finite and within [-1, 1]; write it with "
                         "write_abaw_submission (it clamps)")
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    return SubmissionCheck(rows=len(body), videos=len(dict.fromkeys(v for v, _ in expected)),
                           value_range=(low, high))
