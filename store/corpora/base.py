"""Corpus adapters: read a corpus as its owners ship it, validate it, and import it into affectcache.

An adapter (one module per corpus, ``corpus_<name>.py``, registered with :func:`register_corpus`) reads
the corpus's own annotation files and returns a :class:`CorpusImport`: manifest items, frame-level label
tracks, corpus-shipped transcripts, and every :class:`Problem` it found (missing media, label files
without media and the reverse, duplicate ids, out-of-range values, malformed lines), each with its file
and line. :func:`write_corpus` then refuses on any error (and, with ``strict``, on any warning) before
anything is written; otherwise it writes the label tracks (``labels/<track>``) and the ``transcript``
text modality into the store, and the manifest last, atomically.

Conventions shared by every adapter:

* Splits are normalised to ``train`` / ``val`` / ``test`` (MOSEI ``valid``, MELD ``dev``, SEWA
  ``Devel`` and FIv2 ``validation`` become ``val``).
* Items whose media file is missing are reported (warning) and left out of the manifest, with their
  labels: a manifest row must name a file, and frame-clock label tracks need the file's real fps.
* Out-of-range values are reported (warning) and treated as missing: a masked frame in a label track,
  None in a manifest label column.
* Label tracks are frame-level: ``frame`` is the row index at the track's native rate (video frames, or
  10 Hz rows for SEWA), ``time_s`` is seconds from the media file's start, and the entry attrs record
  ``rate_hz``. Invalid rows are stored as 0 with ``mask`` false (the store never holds NaN).
* Transcript rows are ``start_s``/``end_s`` in seconds from the media file's start (the media clock,
  also for clips of a longer file).
* Label tracks record the corpus as their ``source``, so one store holds the tracks of one corpus; a
  second corpus's ``labels/valence`` is refused (use another store).
"""

from __future__ import annotations

import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.extractors.core.registry import Registry
from affectcache.extractors.media.probe import MediaInfo, probe
from affectcache.store.errors import InvalidVideoIdError, ProvenanceMismatchError, StoreError
from affectcache.store.ids import validate_video_id
from affectcache.store.manifest import Manifest, write_manifest
from affectcache.store.zarr_store import FeatureStore, label_modality

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "TRANSCRIPT_MODALITY",
    "CorpusAdapter",
    "CorpusError",
    "CorpusImport",
    "CorpusReport",
    "MediaIndex",
    "Problem",
    "ProblemLog",
    "TrackEntry",
    "TranscriptEntry",
    "available_corpora",
    "get_corpus_adapter",
    "import_corpus",
    "read_corpus",
    "register_corpus",
    "write_corpus",
]

logger = logging.getLogger(__name__)

Severity: TypeAlias = Literal["error", "warning"]

TRANSCRIPT_MODALITY = "transcript"
"""Store name of the text modality that holds corpus-shipped transcripts."""
TRANSCRIPT_EXTRACTOR = "corpus-transcript"
"""``extractor`` recorded in the transcript modality's provenance."""
TRANSCRIPT_VERSION = "1"
"""Version of the transcript import (bump when its rows change meaning)."""

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".flv")
"""File suffixes (lower case) a :class:`MediaIndex` treats as media."""

MAX_LISTED_PROBLEMS = 20
"""How many problems a refusal lists before summarising the rest."""

# The built-in adapters; imported on first use of the registry (they import this module).
_BUILTIN_MODULES: tuple[str, ...] = (
    "affectcache.store.corpora.affwild2",
    "affectcache.store.corpora.mosei",
    "affectcache.store.corpora.fiv2",
    "affectcache.store.corpora.bah",
    "affectcache.store.corpora.meld",
    "affectcache.store.corpora.sewa",
    "affectcache.store.corpora.folder",
)


class CorpusError(StoreError):
    """A corpus cannot be imported: errors in its files, or warnings under ``--strict``."""


# ---- records -------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with a corpus, where it was found."""

    file: str
    """The file (relative to the corpus root or media folder where possible), optionally with an
    HDF5 dataset path in brackets."""
    line: int | None
    """1-based line (or row) in ``file``; None when the problem concerns the whole file."""
    message: str
    """What is wrong and what happens to the data."""
    severity: Severity
    """``error`` always refuses the import; ``warning`` refuses only with ``strict``."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, kw_only=True, eq=False)
class TrackEntry:
    """One video's rows of one label track, at the track's native rate."""

    track: str
    """Track name (``valence`` → store group ``labels/valence``)."""
    video_id: str
    """The manifest item the track belongs to."""
    values: npt.NDArray[np.float32]
    """(n,) values; entries where ``valid`` is false are ignored (stored as 0)."""
    valid: npt.NDArray[np.bool_]
    """(n,) whether each row holds a real annotation."""
    time_s: npt.NDArray[np.float64]
    """(n,) seconds from the media file's start."""
    rate_hz: float
    """Native rate of the track (the video's fps for per-frame annotations)."""
    source_file: str
    """The annotation file the rows came from (relative to the corpus root)."""

    def to_feature_array(self) -> FeatureArray:
        """The entry as a frame-level :class:`FeatureArray` (``frame`` = row index)."""
        values = np.where(self.valid, self.values, 0.0).astype(np.float32)
        n = values.shape[0]
        return FeatureArray(video_id=self.video_id, kind="frame", values=values,
                            frame=np.arange(n, dtype=np.int64), time_s=self.time_s, mask=self.valid.copy(),
                            attrs={"rate_hz": self.rate_hz, "source_file": self.source_file,
                                   "n_valid": int(self.valid.sum())})


@dataclass(frozen=True, kw_only=True, eq=False)
class TranscriptEntry:
    """One item's transcript segments."""

    video_id: str
    """The manifest item the transcript belongs to."""
    text: tuple[str, ...]
    """Segment texts (utterances or words), in time order."""
    start_s: tuple[float, ...]
    """Segment starts, seconds from the media file's start."""
    end_s: tuple[float, ...]
    """Segment ends, seconds from the media file's start."""
    source_file: str
    """The file the transcript came from (relative to the corpus root)."""

    def to_feature_array(self) -> FeatureArray:
        """The entry as a text :class:`FeatureArray`."""
        return FeatureArray(video_id=self.video_id, kind="text", values=np.array(self.text, dtype=object),
                            start_s=np.asarray(self.start_s, dtype=np.float64),
                            end_s=np.asarray(self.end_s, dtype=np.float64),
                            attrs={"source_file": self.source_file})


@dataclass(frozen=True, kw_only=True)
class CorpusImport:
    """Everything an adapter read from a corpus, before anything is written."""

    corpus: str
    """Adapter name (also the manifest's ``corpus`` column)."""
    items: tuple[MediaItem, ...]
    """Manifest rows, in corpus order."""
    tracks: tuple[TrackEntry, ...] = ()
    """Label-track entries (only for items in ``items``)."""
    transcripts: tuple[TranscriptEntry, ...] = ()
    """Transcript entries (only for items in ``items``)."""
    problems: tuple[Problem, ...] = ()
    """Everything found wrong, in reading order."""
    source_files: tuple[str, ...] = ()
    """Annotation files read (relative to the root), recorded in the store's provenance."""
    track_descriptions: Mapping[str, str] = field(default_factory=dict)
    """Track name → one-line description (recorded with the label track)."""

    @property
    def errors(self) -> list[Problem]:
        """Problems that always refuse the import."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that refuse the import only under ``strict``."""
        return [p for p in self.problems if p.severity == "warning"]

    def check(self, *, strict: bool) -> None:
        """Raise :class:`CorpusError` listing the problems when the import must be refused.

        Args:
            strict: Refuse on warnings too.

        Raises:
            CorpusError: There are errors, or warnings and ``strict``, or no item at all.
        """
        blocking = self.errors + (self.warnings if strict else [])
        if blocking:
            n = len(blocking)
            listed = "\n".join(f"  - {p}" for p in blocking[:MAX_LISTED_PROBLEMS])
            more = f"\n  ... and {n - MAX_LISTED_PROBLEMS} more" if n > MAX_LISTED_PROBLEMS else ""
            why = "warnings are refused under --strict; " if strict and self.warnings else ""
            raise CorpusError(f"corpus {self.corpus}: {n} problem(s), nothing was written ({why}fix the "
                              f"files or the media folder and run again):\n{listed}{more}")
        if not self.items:
            raise CorpusError(f"corpus {self.corpus}: no item has both annotations and a media file; "
                              "nothing was written (check --root and --media)")


@dataclass(frozen=True, kw_only=True)
class CorpusReport:
    """What :func:`write_corpus` wrote."""

    corpus: str
    """Adapter name."""
    manifest_path: Path
    """The manifest written."""
    n_items: int
    """Manifest rows."""
    splits: dict[str, int]
    """Rows per split (``-`` for none)."""
    track_entries: dict[str, int]
    """Entries written per label track (empty without a store)."""
    n_transcripts: int
    """Transcript entries written (0 without a store)."""
    warnings: tuple[Problem, ...]
    """The warnings that did not refuse the import."""

    def summary(self) -> str:
        """One line: rows per split, label and transcript entries, warnings."""
        splits = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        tracks = ", ".join(f"labels/{k} {v}" for k, v in self.track_entries.items()) or "no label tracks"
        return (f"{self.corpus}: {self.n_items} items ({splits}) -> {self.manifest_path}; {tracks}; "
                f"{self.n_transcripts} transcripts; {len(self.warnings)} warning(s)")


# ---- helpers for adapters ------------------------------------------------------------------------
class ProblemLog:
    """Collects :class:`Problem` records, naming files relative to the corpus root or media folder.

    Args:
        *bases: Folders file names are made relative to (the first that contains the file wins).
    """

    def __init__(self, *bases: Path) -> None:
        self.bases = tuple(Path(os.path.abspath(b)) for b in bases)
        self.problems: list[Problem] = []

    def name(self, path: str | Path) -> str:
        """``path`` relative to the first base folder that contains it (else as given)."""
        absolute = Path(os.path.abspath(path))
        for base in self.bases:
            if absolute.is_relative_to(base):
                return absolute.relative_to(base).as_posix()
        return str(path)

    def error(self, file: str | Path, line: int | None, message: str) -> None:
        """Record a problem that refuses the import."""
        self._add(file, line, message, "error")

    def warning(self, file: str | Path, line: int | None, message: str) -> None:
        """Record a problem that refuses the import only under ``strict``."""
        self._add(file, line, message, "warning")

    def _add(self, file: str | Path, line: int | None, message: str, severity: Severity) -> None:
        name = file if isinstance(file, str) else self.name(file)
        self.problems.append(Problem(file=name, line=line, message=message, severity=severity))


class MediaIndex:
    """The media files under a folder, found once and looked up by file stem.

    Args:
        root: Folder searched recursively (hidden folders skipped).
        suffixes: Media suffixes (lower case).
    """

    def __init__(self, root: Path, suffixes: Sequence[str] = VIDEO_SUFFIXES) -> None:
        self.root = Path(os.path.abspath(root))
        self.by_stem: dict[str, list[Path]] = {}
        if self.root.is_dir():
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    path = Path(dirpath) / filename
                    if path.suffix.lower() in suffixes and not filename.startswith("."):
                        self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, stem: str) -> Path | None:
        """The media file named ``stem`` + a media suffix (the first in sorted order if several)."""
        found = self.by_stem.get(stem)
        return found[0] if found else None

    def unreferenced(self, used: Iterable[Path]) -> list[Path]:
        """Media files not in ``used``, sorted."""
        used_set = {Path(os.path.abspath(p)) for p in used}
        return sorted(p for paths in self.by_stem.values() for p in paths if p not in used_set)

    def report_unreferenced(self, used: Iterable[Path], log: ProblemLog, what: str = "labels") -> None:
        """Warn about every media file no item uses (media without annotations)."""
        for path in self.unreferenced(used):
            log.warning(path, None, f"media file without {what}; not in the manifest")


class CorpusReading:
    """What every adapter keeps while it reads one corpus, and the checks they all make.

    The problem log, the media index (built on first use), the items, label tracks, transcripts and
    source files found so far, which ids are taken (a second row for an id is an error) and which media
    files are used (the others are reported as media without labels by :meth:`result`).

    Args:
        corpus: The adapter's registry name (the manifest's ``corpus`` value).
        root: The corpus folder as shipped (absolute).
        media: The folder holding its media files (absolute).
        track_descriptions: Label track -> description, stored with the tracks.
    """

    def __init__(self, corpus: str, root: Path, media: Path, *,
                 track_descriptions: Mapping[str, str] | None = None) -> None:
        self.corpus = corpus
        self.media = media
        self.log = ProblemLog(root, media)
        self.items: list[MediaItem] = []
        self.tracks: list[TrackEntry] = []
        self.transcripts: list[TranscriptEntry] = []
        self.sources: list[str] = []
        self._track_descriptions = dict(track_descriptions or {})
        self._index: MediaIndex | None = None
        self._seen: dict[str, str] = {}
        self._used: list[Path] = []

    @property
    def index(self) -> MediaIndex:
        """The media files under ``media``, found once."""
        if self._index is None:
            self._index = MediaIndex(self.media)
        return self._index

    def claim(self, video_id: str, file: str | Path, line: int | None, *, what: str = "video",
              hint: str = "") -> bool:
        """Take ``video_id`` for the row at ``file``:``line``; False (an error recorded) when another row
        has it already or it is not a valid id. ``hint`` is appended to the duplicate message."""
        previous = self._seen.get(video_id)
        if previous is not None:
            self.log.error(file, line, f"duplicate {what} {video_id!r} (also {previous}){hint}")
            return False
        name = file if isinstance(file, str) else self.log.name(file)
        self._seen[video_id] = name if line is None else f"{name}:{line}"
        return check_video_id(video_id, self.log, file, line)

    def find_media(self, stem: str, file: str | Path, line: int | None, *, what: str = "label",
                   consequence: str = "left out of the manifest") -> Path | None:
        """The media file named ``stem`` (marked used), or None with a warning naming the row."""
        path = self.index.find(stem)
        if path is None:
            self.log.warning(file, line, f"{what} without media: no {stem}.<video suffix> under "
                                         f"{self.index.root}; {consequence}")
            return None
        self.use(path)
        return path

    def use(self, path: Path) -> None:
        """Mark a media file as used by an item (found by the adapter itself)."""
        self._used.append(path)

    def add_transcript(self, video_id: str, text: str, media_path: Path, source_file: str | Path) -> None:
        """One transcript row spanning the whole clip (its duration probed; a probe failure is reported)."""
        info = probe_or_report(media_path, self.log, f"no transcript row for {video_id}")
        if info is not None:
            self.transcripts.append(TranscriptEntry(
                video_id=video_id, text=(text,), start_s=(0.0,), end_s=(float(info.duration_s),),
                source_file=source_file if isinstance(source_file, str) else self.log.name(source_file)))

    def refuse(self, file: str | Path, message: str) -> CorpusImport:
        """Record an error that stops the reading, and return what there is (nothing to import)."""
        self.log.error(file, None, message)
        return self.result(report_unreferenced=False)

    def result(self, *, report_unreferenced: bool = True) -> CorpusImport:
        """The import; every media file no item used is reported as media without labels first."""
        if report_unreferenced:
            self.index.report_unreferenced(self._used, self.log)
        return CorpusImport(corpus=self.corpus, items=tuple(self.items), tracks=tuple(self.tracks),
                            transcripts=tuple(self.transcripts), problems=tuple(self.log.problems),
                            source_files=tuple(self.sources),
                            track_descriptions=dict(self._track_descriptions))


def parse_number(text: str) -> float | None:
    """A finite float from ``text`` (scientific notation allowed), else None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._\-]")


def safe_video_id(name: str) -> str:
    """``name`` with every character a video id cannot hold replaced by ``_`` (leading dots too)."""
    cleaned = _UNSAFE_ID_CHARS.sub("_", name)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned


def check_video_id(video_id: str, log: ProblemLog, file: str | Path, line: int | None) -> bool:
    """Whether ``video_id`` is valid; records an error naming the file and line if not."""
    try:
        validate_video_id(video_id)
    except InvalidVideoIdError as exc:
        log.error(file, line, str(exc))
        return False
    return True


def probe_or_report(path: Path, log: ProblemLog, consequence: str) -> MediaInfo | None:
    """Probe a media file; on bad media record a warning ending with ``consequence`` and return None."""
    try:
        return probe(path)
    except BadMediaError as exc:
        log.warning(path, None, f"cannot read the media file ({exc}); {consequence}")
        return None


def split_counts(items: Iterable[MediaItem]) -> dict[str, int]:
    """Rows per split, in first-seen order (``-`` for items without a split)."""
    return dict(Counter(item.split or "-" for item in items))


# ---- adapters and their registry -----------------------------------------------------------------
class CorpusAdapter(ABC):
    """Reads one corpus's shipped files into a :class:`CorpusImport`; never writes anything."""

    name: ClassVar[str]
    """Registry name, also the manifest's ``corpus`` value (``aff-wild2``, ``mosei``, ...)."""
    summary: ClassVar[str]
    """One line for ``affectcache manifest --help``."""

    @abstractmethod
    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read and validate the corpus.

        Args:
            root: The corpus folder as its owners ship it (absolute).
            media: The folder holding its media files (absolute; often ``root``).

        Returns:
            Items, label tracks, transcripts and every problem found. Only problems with the files'
            contents go into ``problems``; adapters never raise for them.
        """


A = TypeVar("A", bound=type[CorpusAdapter])

CORPORA: Registry[type[CorpusAdapter]] = Registry("corpus adapter", error=CorpusError,
                                                   builtin_modules=_BUILTIN_MODULES)
"""Every corpus adapter class by name; the built-in adapters are imported on first lookup."""


def register_corpus(cls: A) -> A:
    """Class decorator adding a corpus adapter to the registry under ``cls.name``."""
    CORPORA.register(getattr(cls, "name", None), cls)  # type: ignore[arg-type]  # checked by register
    return cls


def available_corpora() -> list[str]:
    """Sorted names of the registered corpus adapters."""
    return CORPORA.names()


def get_corpus_adapter(name: str, **options: Any) -> CorpusAdapter:
    """A new adapter for corpus ``name``.

    Raises:
        CorpusError: No adapter has that name (the message lists the choices).
    """
    cls = CORPORA.get(name)
    try:
        return cls(**options)
    except TypeError:
        raise CorpusError(f"corpus {name!r} takes no options {sorted(options)}") from None


# ---- reading and writing -------------------------------------------------------------------------
def read_corpus(name: str, root: str | Path, media: str | Path | None = None,
                **options: Any) -> CorpusImport:
    """Read and validate a corpus with its adapter (nothing is written).

    Args:
        name: Adapter name (see :func:`available_corpora`).
        root: The corpus folder.
        media: The media folder; None uses ``root``.
        **options: Adapter options (``patterns`` of the ``folder`` adapter).

    Returns:
        What the adapter read, problems included.

    Raises:
        CorpusError: Unknown adapter, or ``root`` / ``media`` is not a folder.
    """
    adapter = get_corpus_adapter(name, **options)
    root_path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    media_path = root_path if media is None else Path(os.path.abspath(os.path.expanduser(os.fspath(media))))
    for what, folder in (("--root", root_path), ("--media", media_path)):
        if not folder.is_dir():
            raise CorpusError(f"{what} {str(folder)!r} is not a folder; point it at your copy of the corpus")
    result = adapter.read(root_path, media_path)
    logger.info("%s: read %d items, %d label-track entries, %d transcripts, %d error(s), %d warning(s)",
                name, len(result.items), len(result.tracks), len(result.transcripts), len(result.errors),
                len(result.warnings))
    return result


def write_corpus(result: CorpusImport, out: str | Path, *, store: FeatureStore | str | Path | None = None,
                 strict: bool = False) -> CorpusReport:
    """Write a validated import: label tracks and transcripts into ``store``, then the manifest.

    Nothing is written when :meth:`CorpusImport.check` refuses, when the items would not form a valid
    manifest, or when the store already holds these tracks or the transcript modality with another
    provenance (e.g. another corpus's ``labels/valence``). The manifest is written last, atomically.

    Args:
        result: What :func:`read_corpus` returned.
        out: Manifest file (``.csv``, ``.jsonl``, optionally ``.gz``).
        store: Feature store (object or location) for label tracks and transcripts; None writes only
            the manifest.
        strict: Refuse on warnings too.

    Returns:
        What was written.

    Raises:
        CorpusError: Refused (problems, or no items).
        ManifestError: The items do not form a valid manifest.
        ProvenanceMismatchError: The store holds a track or the transcript modality made differently.
    """
    result.check(strict=strict)
    item_ids = {item.video_id for item in result.items}
    Manifest(items=result.items)  # ids valid and unique, before any byte is written
    entry_ids = [e.video_id for e in result.tracks] + [e.video_id for e in result.transcripts]
    strays = [vid for vid in entry_ids if vid not in item_ids]
    if strays:
        raise StoreError(f"corpus {result.corpus}: adapter bug: label or transcript entries for ids not in "
                         f"the manifest: {sorted(set(strays))[:5]}")
    track_counts: dict[str, int] = {}
    n_transcripts = 0
    if store is not None:
        fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
        track_counts, n_transcripts = _write_store(result, fs)
    manifest_path = write_manifest(result.items, out)
    return CorpusReport(corpus=result.corpus, manifest_path=manifest_path, n_items=len(result.items),
                        splits=split_counts(result.items), track_entries=track_counts,
                        n_transcripts=n_transcripts, warnings=tuple(result.warnings))


def import_corpus(name: str, root: str | Path, out: str | Path, *, media: str | Path | None = None,
                  store: FeatureStore | str | Path | None = None, strict: bool = False) -> CorpusReport:
    """:func:`read_corpus` then :func:`write_corpus` (what ``affectcache manifest`` runs)."""
    return write_corpus(read_corpus(name, root, media), out, store=store, strict=strict)


def transcript_provenance(corpus: str, source_files: Sequence[str]) -> dict[str, Any]:
    """Provenance of the ``transcript`` modality, with the keys of ``Extractor.provenance()``."""
    config = {"corpus": corpus, "source_files": sorted(source_files)}
    return {
        "extractor": TRANSCRIPT_EXTRACTOR, "version": TRANSCRIPT_VERSION, "modality_kind": "text",
        "config": config, "config_fingerprint": stable_hash(config), "upstream": {},
        "model": {"id": None, "revision": None, "sha256": None},
        "libraries": library_versions(), "created": utc_now(),
    }


def _transcript_sources(result: CorpusImport) -> list[str]:
    return sorted({e.source_file for e in result.transcripts})


def _write_store(result: CorpusImport, fs: FeatureStore) -> tuple[dict[str, int], int]:
    items = {item.video_id: item for item in result.items}
    tracks = list(dict.fromkeys(e.track for e in result.tracks))
    transcript_prov = transcript_provenance(result.corpus, _transcript_sources(result))
    # Check every group before creating any, so a mismatch leaves the store as it was.
    for track in tracks:
        _check_label_track(fs, track, result.corpus, result.track_descriptions.get(track, ""))
    if result.transcripts:
        _check_identity(fs, TRANSCRIPT_MODALITY, transcript_prov)
    counts: dict[str, int] = {}
    for track in tracks:
        name = fs.init_label_track(track, source=result.corpus,
                                   description=result.track_descriptions.get(track, ""))
        # Few large fragments, one commit each: a corpus of 20k utterances is not 20k commits.
        counts[track] = len(fs.write_many(name, (
            (entry.to_feature_array(), items[entry.video_id].source_info())
            for entry in result.tracks if entry.track == track)))
    if result.transcripts:
        fs.init_modality(TRANSCRIPT_MODALITY, transcript_prov)
        fs.write_many(TRANSCRIPT_MODALITY, ((t.to_feature_array(), items[t.video_id].source_info())
                                            for t in result.transcripts))
    logger.info("%s: wrote %s and %d transcripts into %s", result.corpus,
                ", ".join(f"{label_modality(t)} ({n})" for t, n in counts.items()) or "no label tracks",
                len(result.transcripts), fs.url)
    return counts, len(result.transcripts)


def _check_label_track(fs: FeatureStore, track: str, corpus: str, description: str) -> None:
    name = label_modality(track)
    if not fs.has_modality(name):
        return
    config = fs.provenance(name).get("config") or {}
    if (config.get("source"), config.get("description")) != (corpus, description):
        raise ProvenanceMismatchError(
            f"{name} in {fs.url} holds labels from {config.get('source')!r}, not {corpus!r}; one store holds "
            "the label tracks of one corpus: write to another store (--store), or delete the track first")


def _check_identity(fs: FeatureStore, name: str, provenance: Mapping[str, Any]) -> None:
    if not fs.has_modality(name):
        return
    old = fs.provenance(name)
    keys = ("extractor", "version", "modality_kind", "config_fingerprint")
    if any(old.get(k) != provenance.get(k) for k in keys):
        raise ProvenanceMismatchError(
            f"modality {name!r} in {fs.url} was made by {old.get('extractor')!r} from {old.get('config')!r}, "
            f"not from {provenance.get('config')!r}; write to another store or delete the modality first")

