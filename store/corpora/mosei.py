"""CMU-MOSEI corpus adapter: utterance clips with sentiment and six emotion intensities.

Two sources, found anywhere under ``--root``:

* The CMU Multimodal SDK's computational sequences (HDF5 ``.csd``): ``CMU_MOSEI_Labels.csd`` holds
  ``/<root name>/data/<video_id>/{features, intervals}`` with one row per utterance: 7 values
  [sentiment, happy, sad, anger, surprise, disgust, fear] (sentiment in [-3, 3], emotions in [0, 3]) and
  its start/end seconds. The standard folds (video ids) are read from the SDK's
  ``cmu_mosei_std_folds.py`` (parsed as data, never executed) into ``split``. When
  ``CMU_MOSEI_TimestampedWords.csd`` is present, its words (``sp`` pauses dropped) become each
  utterance's transcript, one row per word.
* Otherwise SCD-MMPSR's tables ``{train,dev,test}_full_with_description.csv`` (``video_name =
  <video_id>_<start>_<end>``, normalised emotion columns ``Neutral, Anger, ..., Other`` kept under
  their own names, and the utterance ``text`` as transcript).

Each utterance is a manifest row ``<video_id>_<start:.4f>_<end:.4f>`` (SCD's naming, so both sources give
the same ids) clipping the full video ``<video_id>.<suffix>`` from ``--media``.
"""

from __future__ import annotations

import ast
import csv
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    ProblemLog,
    TranscriptEntry,
    parse_number,
    register_corpus,
)

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

LABELS_FILE = "CMU_MOSEI_Labels.csd"
WORDS_FILE = "CMU_MOSEI_TimestampedWords.csd"
FOLDS_FILE = "cmu_mosei_std_folds.py"
LABEL_NAMES: tuple[str, ...] = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")
"""The 7 values of a labels row, in the SDK's order."""
FOLD_SPLITS: dict[str, str] = {"standard_train_fold": "train", "standard_valid_fold": "val",
                               "standard_test_fold": "test"}
CSV_PATTERN = re.compile(r"^(train|dev|val|valid|test)_full_with_description\.csv$")
CSV_SPLITS: dict[str, str] = {"train": "train", "dev": "val", "val": "val", "valid": "val", "test": "test"}
CSV_EMOTIONS: tuple[str, ...] = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise",
                                 "Other")
"""SCD-MMPSR's emotion columns (each row sums to 1), kept under these names in the manifest."""
PAUSE_TOKEN = "sp"
_CSV_NAME = re.compile(r"^(?P<vid>.+)_(?P<start>[0-9.eE+-]+)_(?P<end>[0-9.eE+-]+)$")


def utterance_id(video_id: str, start_s: float, end_s: float) -> str:
    """SCD-MMPSR's utterance name: ``<video_id>_<start:.4f>_<end:.4f>``."""
    return f"{video_id}_{start_s:.4f}_{end_s:.4f}"


def label_range(name: str) -> tuple[float, float]:
    """Valid range of a CSD label value."""
    return (-3.0, 3.0) if name == "sentiment" else (0.0, 3.0)


@dataclass(kw_only=True)
class _Utterance:
    video: str
    start_s: float
    end_s: float
    split: str | None
    labels: dict[str, Any]
    where: str
    line: int | None
    text: str | None = None
    words: list[tuple[str, float, float]] = field(default_factory=list)


@register_corpus
class MoseiAdapter(CorpusAdapter):
    """CMU-MOSEI utterances (clips of each full video) with 7 label values and transcripts."""

    name: ClassVar[str] = "mosei"
    summary: ClassVar[str] = "CMU-MOSEI: utterance clips, sentiment + 6 emotions (SDK .csd or SCD CSV)"

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read the SDK labels (or, without them, SCD's CSV tables); see the module docstring."""
        reading = CorpusReading(self.name, root, media)
        log = reading.log
        sources = reading.sources
        labels_files = sorted(root.rglob(LABELS_FILE))
        csv_files = sorted(p for p in root.rglob("*.csv") if CSV_PATTERN.match(p.name))
        if labels_files:
            if len(labels_files) > 1:
                log.warning(labels_files[1], None,
                            f"a second {LABELS_FILE}; only {log.name(labels_files[0])} is read")
            if csv_files:
                logger.info("mosei: reading %s; the SCD CSV tables are not needed and were not read",
                            labels_files[0])
            folds = _read_folds(root, log)
            utterances = _read_csd_labels(labels_files[0], folds, log)
            sources.append(log.name(labels_files[0]))
            words_files = sorted(root.rglob(WORDS_FILE))
            if words_files:
                _attach_words(words_files[0], utterances, log)
                sources.append(log.name(words_files[0]))
        elif csv_files:
            utterances = []
            for path in csv_files:
                utterances.extend(_read_scd_csv(path, log))
                sources.append(log.name(path))
        else:
            return reading.refuse(root, f"neither {LABELS_FILE} nor SCD's *_full_with_description.csv tables "
                                        "found")

        missing: set[str] = set()
        for utt in utterances:
            vid = utterance_id(utt.video, utt.start_s, utt.end_s)
            if not reading.claim(vid, utt.where, utt.line, what="utterance"):
                continue
            if utt.video in missing:  # warned once per source video
                continue
            media_path = reading.find_media(utt.video, utt.where, utt.line,
                                            consequence="its utterances are left out")
            if media_path is None:
                missing.add(utt.video)
                continue
            reading.items.append(MediaItem(video_id=vid, path=str(media_path), start_s=utt.start_s,
                                           end_s=utt.end_s, split=utt.split, subject=utt.video,
                                           corpus=self.name, labels=utt.labels))
            source = sources[-1] if utt.words else utt.where
            if utt.words:
                words = sorted(utt.words, key=lambda w: (w[1], w[2]))
                reading.transcripts.append(TranscriptEntry(
                    video_id=vid, text=tuple(w[0] for w in words), start_s=tuple(w[1] for w in words),
                    end_s=tuple(w[2] for w in words), source_file=source))
            elif utt.text:
                reading.transcripts.append(TranscriptEntry(video_id=vid, text=(utt.text,),
                                                           start_s=(utt.start_s,), end_s=(utt.end_s,),
                                                           source_file=source))
        return reading.result()


def _read_folds(root: Path, log: ProblemLog) -> dict[str, str]:
    """Video id → split from the SDK's folds file, read with :func:`ast.literal_eval` (never run)."""
    files = sorted(root.rglob(FOLDS_FILE))
    if not files:
        log.warning(root, None, f"no {FOLDS_FILE} (CMU Multimodal SDK standard folds); split left empty")
        return {}
    path = files[0]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        log.error(path, getattr(exc, "lineno", None), f"cannot read the folds ({type(exc).__name__}: {exc})")
        return {}
    folds: dict[str, str] = {}
    found: set[str] = set()
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id in FOLD_SPLITS):
            continue
        name = node.targets[0].id
        try:
            ids = ast.literal_eval(node.value)
        except ValueError:
            log.error(path, node.lineno, f"{name} is not a literal list of video ids")
            continue
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            log.error(path, node.lineno, f"{name} is not a list of strings")
            continue
        found.add(name)
        for vid in ids:
            if vid in folds and folds[vid] != FOLD_SPLITS[name]:
                log.error(path, node.lineno, f"video {vid!r} is in two folds ({folds[vid]} and "
                                             f"{FOLD_SPLITS[name]})")
            folds[vid] = FOLD_SPLITS[name]
    for name in FOLD_SPLITS.keys() - found:
        log.error(path, None, f"no {name} = [...] assignment")
    return folds


def _h5py() -> Any:
    import h5py  # type: ignore[import-untyped]  # h5py ships no type information

    return h5py


def _root_group(h5: Any, path: Path, log: ProblemLog) -> Any | None:
    roots = list(h5.keys())
    if len(roots) != 1 or "data" not in h5[roots[0]]:
        log.error(path, None, f"not a computational sequence: expected one root group with data/, "
                              f"found {roots}")
        return None
    return h5[roots[0]]["data"]


def _read_csd_labels(path: Path, folds: dict[str, str], log: ProblemLog) -> list[_Utterance]:
    h5py = _h5py()
    rel = log.name(path)
    out: list[_Utterance] = []
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        log.error(path, None, f"cannot open as HDF5 ({exc})")
        return out
    with h5:
        data = _root_group(h5, path, log)
        if data is None:
            return out
        for video in sorted(data.keys()):
            where = f"{rel}[data/{video}]"
            try:
                feats = np.asarray(data[video]["features"][...], dtype=np.float64)
                intervals = np.asarray(data[video]["intervals"][...], dtype=np.float64)
            except (KeyError, ValueError, TypeError) as exc:
                log.error(where, None, f"needs numeric features and intervals ({type(exc).__name__}: {exc})")
                continue
            if (feats.ndim != 2 or feats.shape[1] != len(LABEL_NAMES)
                    or intervals.shape != (feats.shape[0], 2)):
                log.error(where, None, f"expected features (m, {len(LABEL_NAMES)}) and intervals (m, 2), got "
                                       f"{feats.shape} and {intervals.shape}")
                continue
            split = folds.get(video)
            if folds and split is None:
                log.warning(where, None, f"video {video!r} is in none of the standard folds; no split")
            for row in range(feats.shape[0]):
                start = _clamp_start(float(intervals[row, 0]), float(intervals[row, 1]), where, row + 1, log)
                end = float(intervals[row, 1])
                if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
                    log.error(where, row + 1, f"interval [{start}, {end}] is not a clip (0 <= start < end)")
                    continue
                labels: dict[str, Any] = {}
                for name, value in zip(LABEL_NAMES, feats[row], strict=True):
                    low, high = label_range(name)
                    if not (np.isfinite(value) and low <= value <= high):
                        log.warning(where, row + 1,
                                    f"{name} {value:g} outside [{low:g}, {high:g}]; left empty")
                        labels[name] = None
                    else:
                        labels[name] = float(value)
                out.append(_Utterance(video=video, start_s=start, end_s=end, split=split, labels=labels,
                                      where=where, line=row + 1))
    return out


def _clamp_start(start: float, end: float, where: str, line: int, log: ProblemLog) -> float:
    """A start slightly before the video (the CMU label files have some, e.g. -0.4776) becomes 0, with a
    warning naming the segment; the rest of the corpus imports. Other bad intervals are left as they are,
    for the caller to refuse."""
    if np.isfinite(start) and np.isfinite(end) and start < 0 < end:
        log.warning(where, line, f"interval [{start:g}, {end:g}] starts before the video; start clamped to 0")
        return 0.0
    return start


def _attach_words(path: Path, utterances: list[_Utterance], log: ProblemLog) -> None:
    """Give each utterance the words whose midpoint lies inside it."""
    h5py = _h5py()
    by_video: dict[str, list[_Utterance]] = {}
    for utt in utterances:
        by_video.setdefault(utt.video, []).append(utt)
    rel = log.name(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        log.error(path, None, f"cannot open as HDF5 ({exc})")
        return
    with h5:
        data = _root_group(h5, path, log)
        if data is None:
            return
        for video, utts in by_video.items():
            if video not in data:
                continue
            where = f"{rel}[data/{video}]"
            words = data[video]["features"][...]
            intervals = np.asarray(data[video]["intervals"][...], dtype=np.float64)
            if words.shape[0] != intervals.shape[0]:
                log.error(where, None, f"{words.shape[0]} words but {intervals.shape[0]} intervals")
                continue
            for row in range(words.shape[0]):
                raw = words[row][0] if np.ndim(words[row]) else words[row]
                try:
                    word = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                except UnicodeDecodeError:
                    log.warning(where, row + 1, f"word {raw!r} is not UTF-8; decoded as Latin-1")
                    word = raw.decode("latin-1")
                if word == PAUSE_TOKEN:
                    continue
                start, end = float(intervals[row, 0]), float(intervals[row, 1])
                middle = 0.5 * (start + end)
                for utt in utts:
                    if utt.start_s <= middle < utt.end_s:
                        utt.words.append((word, start, end))
                        break


def _read_scd_csv(path: Path, log: ProblemLog) -> list[_Utterance]:
    match = CSV_PATTERN.match(path.name)
    split = CSV_SPLITS[match.group(1)] if match else None
    rel = log.name(path)
    out: list[_Utterance] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            needed = ("video_name", "text", *CSV_EMOTIONS[:-1])
            absent = [c for c in needed if c not in header]
            if absent:
                log.error(path, 1, f"missing column(s) {absent}; expected SCD-MMPSR's {list(needed)}")
                return out
            for record in reader:
                line = reader.line_num
                name = (record.get("video_name") or "").strip()
                parsed = _CSV_NAME.match(name)
                start = parse_number(parsed.group("start")) if parsed else None
                end = parse_number(parsed.group("end")) if parsed else None
                if parsed is None or start is None or end is None or not 0 <= start < end:
                    log.error(path, line,
                              f"video_name {name!r} is not <video_id>_<start>_<end> with start < end")
                    continue
                labels: dict[str, Any] = {}
                for column in CSV_EMOTIONS:
                    cell = record.get(column)
                    value = parse_number(cell) if cell not in (None, "") else None
                    if value is not None and not 0.0 <= value <= 1.0:
                        log.warning(path, line, f"{column} {value:g} outside [0, 1]; left empty")
                        value = None
                    labels[column] = value
                present = [v for v in labels.values() if v is not None]
                if present and abs(sum(present) - 1.0) > 1e-3:
                    log.warning(path, line, f"emotion columns sum to {sum(present):.4f}, not 1")
                out.append(_Utterance(video=parsed.group("vid"), start_s=start, end_s=end, split=split,
                                      labels=labels, where=rel, line=line,
                                      text=(record.get("text") or "").strip() or None))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.error(path, None, f"cannot read ({type(exc).__name__}: {exc})")
    return out
