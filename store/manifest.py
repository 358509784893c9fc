"""Manifests: the list of media items a build extracts from, read from and written to CSV or JSONL.

A manifest has one row per media item (a whole file, or the ``start_s``..``end_s`` clip of one) and is
stored as ``.csv``, ``.jsonl``, ``.csv.gz`` or ``.jsonl.gz``. Columns:

* ``video_id`` (required): the item's key in the store, checked with
  :func:`~affectcache.store.ids.validate_video_id`.
* ``path`` (required): the media file, absolute or relative to the manifest file's folder (``~`` is
  expanded; URLs such as ``https://...`` are kept as they are).
* ``split``, ``subject``, ``corpus`` (optional): strings; empty means unknown.
* ``start_s``, ``end_s`` (optional): clip bounds in seconds, finite and >= 0, ``end_s > start_s``
  (an empty ``start_s`` counts as 0). Several rows may share a ``path`` with different clips.
* any other column is a label and goes into :attr:`MediaItem.labels`.

:func:`load_manifest` checks every row and raises one :class:`~affectcache.store.errors.ManifestError`
naming the file, line and column of every problem. A media file that does not exist is not a load
error (the build runner records it as bad media); :meth:`Manifest.missing_files` lists them.

Value parsing in CSV files: every cell is stripped of surrounding whitespace; an empty cell is None.
In label columns a cell that looks like an integer (``3``, ``-12``) becomes an ``int``, one that looks
like a finite decimal number (``0.5``, ``1e-3``, ``2.``) becomes a ``float``, and anything else stays a
``str`` (also ``nan``, ``inf``, ``true`` and numbers with leading zeros such as ``007``, which are
usually codes). JSONL values are taken as given: label values must be JSON scalars (string, number,
boolean, null) and a key missing from a row reads as null; ``NaN``/``Infinity`` are refused.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeAlias

from affectcache.extractors.core.atomic import atomic_write_bytes
from affectcache.extractors.core.records import MediaItem
from affectcache.store.errors import InvalidVideoIdError, ManifestError
from affectcache.store.ids import validate_video_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = [
    "CLIP_COLUMNS",
    "KNOWN_COLUMNS",
    "MANIFEST_SUFFIXES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Manifest",
    "load_manifest",
    "manifest_digest",
    "parse_csv_label",
    "write_manifest",
]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("video_id", "path")
"""Columns every manifest must have, with a value in every row."""

TEXT_COLUMNS: tuple[str, ...] = ("split", "subject", "corpus")
"""Optional string columns mapped to :class:`MediaItem` fields."""

CLIP_COLUMNS: tuple[str, ...] = ("start_s", "end_s")
"""Optional clip-bound columns (seconds within the media file)."""

OPTIONAL_COLUMNS: tuple[str, ...] = (*TEXT_COLUMNS, *CLIP_COLUMNS)
"""Optional columns mapped to :class:`MediaItem` fields; every other column is a label."""

KNOWN_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
"""Columns that are not labels, in the order :func:`write_manifest` writes them."""

MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".csv.gz", ".jsonl.gz")
"""File suffixes :func:`load_manifest` and :func:`write_manifest` understand (case-insensitive)."""

MAX_LISTED_PROBLEMS = 20
"""How many problems a :class:`ManifestError` lists before summarising the rest as "and N more"."""

_DIGEST_SCHEMA = "affectcache.manifest/1"
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_INT_RE = re.compile(r"^[+-]?(?:0|[1-9][0-9]*)$")
_FLOAT_RE = re.compile(r"^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")

Format: TypeAlias = Literal["csv", "jsonl"]
Scalar: TypeAlias = str | int | float | bool | None


# ---- the manifest --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The media items of one manifest, in file order, with unique video ids.

    Built by :func:`load_manifest` (or directly, e.g. in tests); construction checks that every id is
    valid and unique.
    """

    items: tuple[MediaItem, ...]
    """The items, in manifest order."""
    source: Path | None = None
    """Absolute path of the file the manifest was loaded from; None when built in memory."""
    label_columns: tuple[str, ...] = ()
    """Names of the label columns (every column that is not a :data:`KNOWN_COLUMNS` one), in file
    order. Left empty, it is derived from the items' label keys."""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    """video_id -> position in ``items`` (built on construction)."""

    def __post_init__(self) -> None:
        items = tuple(self.items)
        object.__setattr__(self, "items", items)
        index: dict[str, int] = {}
        for pos, item in enumerate(items):
            try:
                validate_video_id(item.video_id)
            except InvalidVideoIdError as exc:
                raise ManifestError(f"{self._where()}item {pos + 1}: {exc}") from None
            if item.video_id in index:
                raise ManifestError(
                    f"{self._where()}duplicate video_id {item.video_id!r} (items "
                    f"{index[item.video_id] + 1} and {pos + 1}); give every item its own id")
            index[item.video_id] = pos
        object.__setattr__(self, "_index", index)
        if not self.label_columns:
            object.__setattr__(self, "label_columns", _label_keys(items))
        else:
            object.__setattr__(self, "label_columns", tuple(self.label_columns))

    def _where(self) -> str:
        return f"manifest {str(self.source)!r}: " if self.source is not None else "manifest: "

    def __len__(self) -> int:
        """Number of items."""
        return len(self.items)

    def __iter__(self) -> Iterator[MediaItem]:
        """The items, in manifest order."""
        return iter(self.items)

    def __contains__(self, video_id: object) -> bool:
        """Whether an item with this video id is in the manifest."""
        return isinstance(video_id, str) and video_id in self._index

    def ids(self) -> list[str]:
        """The video ids, in manifest order."""
        return [item.video_id for item in self.items]

    def get(self, video_id: str) -> MediaItem:
        """The item with this video id.

        Args:
            video_id: Id to look up.

        Returns:
            The item.

        Raises:
            ManifestError: No item has this id; the message lists the closest ids.
        """
        pos = self._index.get(video_id)
        if pos is None:
            raise ManifestError(f"{self._where()}no item has video_id {video_id!r}"
                                f"{self._near(video_id)}; check the id or the manifest")
        return self.items[pos]

    def select(self, *, split: str | None = None, only: Sequence[str] | None = None) -> Manifest:
        """The items of one split and/or with the given ids, in manifest order.

        Args:
            split: Keep only items whose ``split`` equals this; None keeps every split.
            only: Keep only these video ids (duplicates ignored; an empty sequence selects nothing);
                None keeps every id.

        Returns:
            A new manifest with the same ``source`` and ``label_columns``.

        Raises:
            ManifestError: ``split`` matches no item (the message lists the splits there are), or an id
                in ``only`` is not in the manifest (or not in ``split``); the message names each.
            TypeError: ``only`` is a single string instead of a sequence of ids.
        """
        if isinstance(only, str):
            raise TypeError(f"only must be a sequence of video ids, got the string {only!r}; "
                            f"pass [{only!r}]")
        items = self.items
        if split is not None:
            items = tuple(item for item in items if item.split == split)
            if not items:
                splits = sorted({item.split for item in self.items if item.split is not None})
                raise ManifestError(f"{self._where()}no item has split {split!r}; the splits in this "
                                    f"manifest are {splits or 'none (no split column)'}")
        if only is not None:
            wanted = set(only)
            unknown = [vid for vid in dict.fromkeys(only) if vid not in self._index]
            if unknown:
                # Close-match hints cost a scan of every id, so only the first few unknown ids get one.
                listed = "; ".join(f"{vid!r}{self._near(vid) if n < 5 else ''}"
                                   for n, vid in enumerate(unknown[:MAX_LISTED_PROBLEMS]))
                more = len(unknown) - MAX_LISTED_PROBLEMS
                raise ManifestError(
                    f"{self._where()}{len(unknown)} requested video id(s) not in the manifest: {listed}"
                    f"{f' and {more} more' if more > 0 else ''}; check the ids or the manifest")
            if split is not None:
                other = [vid for vid in dict.fromkeys(only) if self.get(vid).split != split]
                if other:
                    listed = ", ".join(f"{vid!r} (split {self.get(vid).split!r})"
                                       for vid in other[:MAX_LISTED_PROBLEMS])
                    raise ManifestError(f"{self._where()}requested video id(s) not in split {split!r}: "
                                        f"{listed}; drop them or the split filter")
            items = tuple(item for item in items if item.video_id in wanted)
        return Manifest(items=items, source=self.source, label_columns=self.label_columns)

    def missing_files(self) -> list[MediaItem]:
        """Items whose media file does not exist (or is not a regular file), in manifest order.

        URLs are not checked. Each distinct path is checked once, so clips of one file cost one stat.
        """
        exists: dict[str, bool] = {}
        missing: list[MediaItem] = []
        for item in self.items:
            if _is_url(item.path):
                continue
            if item.path not in exists:
                exists[item.path] = os.path.isfile(item.path)
            if not exists[item.path]:
                missing.append(item)
        return missing

    def _near(self, video_id: str) -> str:
        close = difflib.get_close_matches(video_id, list(self._index), n=5, cutoff=0.6)
        if close:
            return f" (did you mean {', '.join(repr(c) for c in close)}?)"
        return f" (no similar id among the {len(self._index)} items)"


# ---- problems ------------------------------------------------------------------------------------
class _Problems:
    """Collects every problem of one manifest, then raises them as a single :class:`ManifestError`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, message: str, *, line: int | None = None, item: int | None = None,
            column: str | None = None, video_id: str | None = None) -> None:
        """Record a problem at a file line (loading) or item position (writing), both 1-based."""
        where: list[str] = []
        place = f"line {line}" if line is not None else f"item {item}" if item is not None else ""
        if place:
            where.append(place + (f" (video_id {video_id!r})" if video_id else ""))
        elif video_id:
            where.append(f"video_id {video_id!r}")
        if column is not None:
            where.append(f"column {column!r}")
        self.messages.append(f"{', '.join(where)}: {message}" if where else message)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def raise_if_any(self, action: str = "fix the file and load it again") -> None:
        if not self.messages:
            return
        n = len(self.messages)
        listed = "\n".join(f"  - {m}" for m in self.messages[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {n - MAX_LISTED_PROBLEMS} more" if n > MAX_LISTED_PROBLEMS else ""
        noun = "problem" if n == 1 else "problems"
        raise ManifestError(f"manifest {self.source!r} has {n} {noun} ({action}):\n{listed}{more}")


# ---- loading -------------------------------------------------------------------------------------
def load_manifest(path: str | Path) -> Manifest:
    """Read and check a CSV or JSONL manifest (optionally gzip-compressed).

    Args:
        path: The manifest file: ``.csv``, ``.jsonl``, ``.csv.gz`` or ``.jsonl.gz``.

    Returns:
        The manifest, with every item's ``path`` resolved to an absolute path (URLs kept).

    Raises:
        ManifestError: The file cannot be read, has an unsupported suffix, has no rows, or has bad rows;
            the message names the file and, for each problem (up to 20 listed), its line (as numbered in
            the file, the CSV header being line 1), column and video id.
    """
    source = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    fmt, compressed = _format_of(source)
    if not source.is_file():
        raise ManifestError(f"manifest {str(source)!r} does not exist or is not a file; check the path")
    problems = _Problems(str(source))
    try:
        with _open_text(source, compressed) as fh:
            if fmt == "csv":
                records, label_columns = _read_csv(fh, problems)
            else:
                records, label_columns = _read_jsonl(fh, problems)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        hint = "save it as UTF-8" if isinstance(exc, UnicodeDecodeError) else "check the file"
        raise ManifestError(f"manifest {str(source)!r} cannot be read ({type(exc).__name__}: {exc}); "
                            f"{hint}") from exc
    if not records and not problems:
        problems.add("the file has no rows; add one row per media item"
                     + (" below the header line" if fmt == "csv" else ""))
    items = _build_items(records, source.parent, label_columns, problems)
    problems.raise_if_any()
    manifest = Manifest(items=tuple(items), source=source, label_columns=label_columns)
    _warn_shared_clips(manifest)
    logger.info("loaded manifest %s: %d items, label columns %s", source, len(manifest),
                list(label_columns))
    return manifest


@dataclass(frozen=True, kw_only=True)
class _Record:
    """One parsed row before item checks."""

    line: int
    """Line number of the row in the file (1-based)."""
    values: dict[str, Any]
    """Column -> value: stripped cell strings (CSV) or JSON values as parsed (JSONL)."""
    csv: bool
    """Whether the values are CSV cells (strings) rather than JSON values."""


def _format_of(path: Path) -> tuple[Format, bool]:
    name = path.name.lower()
    for suffix in sorted(MANIFEST_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return ("csv" if suffix.startswith(".csv") else "jsonl"), suffix.endswith(".gz")
    found = "".join(path.suffixes) or "(no suffix)"
    raise ManifestError(f"manifest {str(path)!r}: unsupported file type {found}; use one of "
                        f"{', '.join(MANIFEST_SUFFIXES)}")


def _open_text(path: Path, compressed: bool) -> IO[str]:
    # utf-8-sig drops the byte-order mark spreadsheet programs put in front of CSV exports.
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # closed by the caller


def _read_csv(fh: IO[str], problems: _Problems) -> tuple[list[_Record], tuple[str, ...]]:
    reader = csv.reader(fh)
    header_row = next(reader, None)
    while header_row is not None and not any(cell.strip() for cell in header_row):
        header_row = next(reader, None)  # blank lines before the header
    if header_row is None:
        problems.add("the file is empty; the first line must be a header naming the columns "
                     f"(at least {', '.join(REQUIRED_COLUMNS)})")
        return [], ()
    header_line = reader.line_num
    header = [name.strip() for name in header_row]
    ok = True
    seen: dict[str, int] = {}
    for pos, name in enumerate(header, start=1):
        if not name:
            problems.add(f"header column {pos} has no name; name it or delete the column",
                         line=header_line)
            ok = False
        elif name in seen:
            problems.add(f"column {name!r} appears twice in the header (columns {seen[name]} and "
                         f"{pos}); rename or delete one", line=header_line)
            ok = False
        else:
            seen[name] = pos
    for required in REQUIRED_COLUMNS:
        if required not in seen:
            problems.add(f"missing required column {required!r}{_did_you_mean(required, header)}; "
                         f"columns found: {', '.join(header)}", line=header_line)
            ok = False
    if not ok:
        return [], ()
    label_columns = tuple(name for name in header if name not in KNOWN_COLUMNS)
    records: list[_Record] = []
    line_before = reader.line_num
    for row in reader:
        start_line, line_before = line_before + 1, reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            problems.add(f"the row has {len(row)} cells but the header has {len(header)} columns; "
                         "check for unquoted commas or missing cells", line=start_line)
            continue
        values = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        records.append(_Record(line=start_line, values=values, csv=True))
    return records, label_columns


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON; use null for a missing value")


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in the object")
        out[key] = value
    return out


def _read_jsonl(fh: IO[str], problems: _Problems) -> tuple[list[_Record], tuple[str, ...]]:
    records: list[_Record] = []
    label_columns: dict[str, None] = {}
    for line_no, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, parse_constant=_reject_constant,
                             object_pairs_hook=_pairs_without_duplicates)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.add(f"malformed JSON ({exc}); write one JSON object per line", line=line_no)
            continue
        if not isinstance(obj, dict):
            problems.add(f"expected a JSON object per line, got {_json_type(obj)}; write "
                         '{"video_id": ..., "path": ...}', line=line_no)
            continue
        for key in obj:
            if key not in KNOWN_COLUMNS:
                label_columns.setdefault(key, None)
        records.append(_Record(line=line_no, values=obj, csv=False))
    return records, tuple(label_columns)


def _build_items(records: Sequence[_Record], base: Path, label_keys: tuple[str, ...],
                 problems: _Problems) -> list[MediaItem]:
    items: list[MediaItem] = []
    first_line: dict[str, int] = {}
    for rec in records:
        video_id, item = _build_item(rec, base, label_keys, problems)
        if video_id is None:
            continue
        if video_id in first_line:  # reported even when the row has other problems
            problems.add(f"duplicate video_id {video_id!r} (first on line {first_line[video_id]}); "
                         "give every row its own id", line=rec.line, column="video_id")
            continue
        first_line[video_id] = rec.line
        if item is not None:
            items.append(item)
    return items


def _build_item(rec: _Record, base: Path, label_keys: tuple[str, ...],
                problems: _Problems) -> tuple[str | None, MediaItem | None]:
    """Check one row: (its video id if valid, its item if the whole row is valid)."""
    n_before = len(problems.messages)
    values = rec.values
    line = rec.line

    # video_id
    raw_id = values.get("video_id")
    video_id: str | None = None
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        what = "missing value in required column" if "video_id" in values else "missing required column"
        problems.add(f"{what}; every row needs a video id", line=line, column="video_id")
    else:
        try:
            video_id = validate_video_id(raw_id)
        except InvalidVideoIdError as exc:
            problems.add(str(exc), line=line, column="video_id")

    def add(message: str, column: str) -> None:
        problems.add(message, line=line, column=column, video_id=video_id)

    # path
    raw_path = values.get("path")
    path: str | None = None
    if raw_path is None or (isinstance(raw_path, str) and not raw_path.strip()):
        what = "missing value in required column" if "path" in values else "missing required column"
        add(f"{what}; give the media file, absolute or relative to the manifest's folder", "path")
    elif not isinstance(raw_path, str):
        add(f"must be a string, got {_json_type(raw_path)} {raw_path!r}; quote it", "path")
    else:
        path = _resolve_path(raw_path, base)

    # split / subject / corpus
    text: dict[str, str | None] = {}
    for column in TEXT_COLUMNS:
        raw = values.get(column)
        if raw is None or raw == "":
            text[column] = None
        elif isinstance(raw, str):
            text[column] = raw
        else:
            add(f"must be a string or null, got {_json_type(raw)} {raw!r}; quote it", column)

    # start_s / end_s
    bounds: dict[str, float | None] = {}
    bounds_ok = True
    for column in CLIP_COLUMNS:
        bounds[column], error = _parse_bound(values.get(column), rec.csv)
        if error is not None:
            add(error, column)
            bounds_ok = False
    start_s, end_s = bounds["start_s"], bounds["end_s"]
    if bounds_ok and end_s is not None and end_s <= (start_s or 0.0):
        add(f"end_s ({end_s:g}) must be greater than start_s ({start_s or 0.0:g}"
            f"{'' if start_s is not None else ', empty start_s counts as 0'}); fix the clip bounds",
            "end_s")

    # labels
    labels: dict[str, Any] = {}
    for key in label_keys:
        raw = values.get(key)
        if rec.csv:
            labels[key] = parse_csv_label(raw) if isinstance(raw, str) else None
        elif isinstance(raw, dict | list):
            add(f"label values must be JSON scalars (string, number, boolean, null), got "
                f"{_json_type(raw)}; flatten it into separate columns or encode it as a string", key)
        elif isinstance(raw, float) and not math.isfinite(raw):
            add(f"label value {raw!r} is not finite; use null for a missing value", key)
        else:
            labels[key] = raw

    if len(problems.messages) != n_before or video_id is None or path is None:
        return video_id, None
    return video_id, MediaItem(video_id=video_id, path=path, start_s=start_s, end_s=end_s,
                               split=text["split"], subject=text["subject"], corpus=text["corpus"],
                               labels=labels)


def _parse_bound(raw: Any, from_csv: bool) -> tuple[float | None, str | None]:
    """A clip bound from a CSV cell or JSON value: (seconds or None, None) or (None, error message)."""
    if raw is None or (from_csv and raw == ""):
        return None, None
    if from_csv and isinstance(raw, str):
        try:
            if "_" in raw:  # float() accepts "1_000"; a manifest should not
                raise ValueError(raw)
            value = float(raw)
        except ValueError:
            return None, f"{raw!r} is not a number; give seconds such as 12.5, or leave it empty"
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, f"must be a number of seconds or null, got {_json_type(raw)} {raw!r}"
    else:
        value = float(raw)
    if not math.isfinite(value):
        return None, f"{raw!r} is not a finite number; give seconds such as 12.5, or leave it empty"
    if value < 0:
        return None, f"{value:g} is negative; clip bounds are seconds from the start of the file (>= 0)"
    return value, None


def parse_csv_label(cell: str) -> Scalar:
    """Parse one CSV label cell: empty -> None, integer -> int, finite decimal -> float, else str.

    Integers with leading zeros (``007``), ``nan``, ``inf`` and ``true``/``false`` stay strings.

    Args:
        cell: The cell text (surrounding whitespace is stripped).

    Returns:
        The parsed value.
    """
    text = cell.strip()
    if not text:
        return None
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        value = float(text)
        return value if math.isfinite(value) else text  # e.g. 1e999 overflows: keep the text
    return text


def _resolve_path(raw: str, base: Path) -> str:
    text = raw.strip()
    if _is_url(text):
        return text
    return os.path.abspath(os.path.join(base, os.path.expanduser(text)))


def _is_url(path: str) -> bool:
    return bool(_URL_RE.match(path))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.7)
    return f" (the header has {lowered[close[0]]!r}; rename it to {name!r})" if close else ""


def _label_keys(items: Sequence[MediaItem]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for item in items for key in item.labels))


def _warn_shared_clips(manifest: Manifest) -> None:
    seen: dict[tuple[str, float | None, float | None], str] = {}
    repeats: list[str] = []
    for item in manifest:
        key = (item.path, item.start_s, item.end_s)
        if key in seen:
            repeats.append(f"{item.video_id!r} = {seen[key]!r}")
        else:
            seen[key] = item.video_id
    if repeats:
        logger.warning("manifest %s: %d item(s) repeat the same file and clip under another id (%s%s); "
                       "they will be extracted twice", manifest.source, len(repeats),
                       ", ".join(repeats[:5]), ", ..." if len(repeats) > 5 else "")


# ---- writing -------------------------------------------------------------------------------------
def write_manifest(items: Sequence[MediaItem] | Manifest, path: str | Path, *,
                   relative_to_manifest: bool = True) -> Path:
    """Write items as a manifest; the format follows the suffix of ``path``.

    Everything is checked before anything is written (valid, unique ids; valid clip bounds; scalar
    labels), and the file is replaced atomically (a temporary file in the same folder, then
    :func:`os.replace`), so readers see the old or the new manifest, never half of one. Missing parent
    folders are created. Columns: ``video_id``, ``path``, then the optional columns any item uses, then
    the labels (a manifest's ``label_columns`` first, then any other label key, in first-seen order).

    CSV cannot keep every label value: a string such as ``"3"`` reads back as an int, ``True`` as
    ``"True"``, ``""`` as None, and surrounding whitespace is stripped; a warning names the affected
    columns. JSONL keeps values exactly.

    Args:
        items: The items (or a :class:`Manifest`).
        path: Output file: ``.csv``, ``.jsonl``, ``.csv.gz`` or ``.jsonl.gz``.
        relative_to_manifest: Write media paths relative to the output file's folder (so the media
            folder and manifest can move together); False writes absolute paths. URLs are kept. Relative
            item paths are taken relative to the current directory.

    Returns:
        The absolute path written.

    Raises:
        ManifestError: Unsupported suffix, no items, or invalid items (every problem is listed).
    """
    target = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    fmt, compressed = _format_of(target)
    rows_in = tuple(items)
    declared = items.label_columns if isinstance(items, Manifest) else ()
    label_columns = tuple(dict.fromkeys((*declared, *_label_keys(rows_in))))
    problems = _Problems(str(target))
    _check_items_for_writing(rows_in, label_columns, problems)
    problems.raise_if_any("nothing was written; fix the items and write again")

    columns = [*REQUIRED_COLUMNS,
               *(c for c in OPTIONAL_COLUMNS if any(getattr(item, c) is not None for item in rows_in)),
               *label_columns]
    rows: list[dict[str, Any]] = []
    for item in rows_in:
        row: dict[str, Any] = {"video_id": item.video_id,
                               "path": _output_path(item.path, target.parent, relative_to_manifest)}
        for column in OPTIONAL_COLUMNS:
            if column in columns:
                row[column] = getattr(item, column)
        for key in label_columns:
            row[key] = item.labels.get(key)
        rows.append(row)

    if fmt == "csv":
        lossy = [key for key in label_columns
                 if any(not _csv_round_trips(row[key]) for row in rows)]
        if lossy:
            logger.warning("manifest %s: CSV cannot keep the types of some values in label column(s) %s "
                           "(number-like, empty or space-padded strings, booleans); write .jsonl to "
                           "keep them exactly", target, lossy)

    fh = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row[c]) for c in columns])
    else:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    data = fh.getvalue().encode("utf-8")
    if compressed:
        data = gzip.compress(data, mtime=0)  # mtime=0: the same rows give byte-identical files

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    logger.info("wrote manifest %s: %d items", target, len(rows_in))
    return target


def _check_items_for_writing(items: Sequence[MediaItem], label_columns: Sequence[str],
                             problems: _Problems) -> None:
    """Record every reason why ``items`` would not load back as a valid manifest."""
    if not items:
        problems.add("no items to write; a manifest needs at least one row")
        return
    for key in label_columns:
        if not isinstance(key, str) or not key or key in KNOWN_COLUMNS:
            problems.add(f"label name {key!r} is empty or clashes with a manifest column "
                         f"({', '.join(KNOWN_COLUMNS)}); rename the label")
    first: dict[str, int] = {}
    for pos, item in enumerate(items, start=1):
        try:
            vid = validate_video_id(item.video_id)
        except InvalidVideoIdError as exc:
            problems.add(str(exc), item=pos, column="video_id")
            continue

        def add(message: str, column: str, pos: int = pos, vid: str = vid) -> None:
            problems.add(message, item=pos, video_id=vid, column=column)

        if vid in first:
            add(f"duplicate video_id (also item {first[vid]}); give every item its own id", "video_id")
        else:
            first[vid] = pos
        if not isinstance(item.path, str) or not item.path.strip():
            add("empty path; give the media file", "path")
        bounds_ok = True
        for column in CLIP_COLUMNS:
            value = getattr(item, column)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                add(f"{value!r} is not a finite number of seconds >= 0", column)
                bounds_ok = False
        if bounds_ok and item.end_s is not None and item.end_s <= (item.start_s or 0.0):
            add(f"end_s ({item.end_s!r}) must be greater than start_s ({item.start_s or 0.0!r})",
                "end_s")
        for column in TEXT_COLUMNS:
            value = getattr(item, column)
            if value is not None and not isinstance(value, str):
                add(f"must be a string or None, got {type(value).__name__}", column)
        for key, value in item.labels.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                add(f"label values must be str, int, float, bool or None, got {type(value).__name__}; "
                    "flatten or encode it", key)
            elif isinstance(value, float) and not math.isfinite(value):
                add(f"label value {value!r} is not finite; use None for a missing value", key)


def _output_path(item_path: str, folder: Path, relative: bool) -> str:
    if _is_url(item_path):
        return item_path
    absolute = os.path.abspath(os.path.expanduser(item_path))
    if not relative:
        return absolute
    try:
        return Path(os.path.relpath(absolute, folder)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return absolute


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_round_trips(value: Any) -> bool:
    back = parse_csv_label(_csv_cell(value))
    return type(back) is type(value) and back == value


# ---- digest --------------------------------------------------------------------------------------
def manifest_digest(manifest: Manifest) -> str:
    """sha256 of the manifest's canonical rows, for run records.

    The digest covers every item's id, resolved path, clip bounds, split, subject, corpus and labels
    (sorted by video id, so row order does not matter; label values keep their types, so ``3`` and
    ``3.0`` differ). It does not cover the manifest's file name, format or column order, nor the media
    files' contents (the store records size and mtime per entry).

    Args:
        manifest: The manifest.

    Returns:
        64 hex digits.
    """
    rows = [
        {"video_id": item.video_id, "path": item.path, "start_s": item.start_s, "end_s": item.end_s,
         "split": item.split, "subject": item.subject, "corpus": item.corpus,
         "labels": dict(item.labels)}
        for item in sorted(manifest.items, key=lambda item: item.video_id)
    ]
    payload = {"schema": _DIGEST_SCHEMA, "label_columns": sorted(manifest.label_columns), "items": rows}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

