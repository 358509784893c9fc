"""MELD corpus adapter: one utterance clip per row, with emotion, sentiment and the spoken text.

Reads ``{train,dev,test}_sent_emo.csv`` found under ``--root`` (columns ``Sr No., Utterance, Speaker,
Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime``; quoted fields may
hold commas; times like ``00:14:38,127``). Clips ``dia{D}_utt{U}.mp4`` are looked up in the split's
folder under ``--media``: ``train_splits/``, ``dev_splits_complete/``, ``output_repeated_splits_test/``.

Dialogue ids restart in every split, so ``video_id`` is ``<split>_dia{D}_utt{U}`` (``dev`` → ``val``).
Label columns: ``emotion`` (neutral, joy, surprise, anger, sadness, disgust, fear), ``sentiment``
(positive, negative, neutral), ``dialogue_id``, ``utterance_id``, ``season``, ``episode``,
``episode_start_s`` / ``episode_end_s`` (the clip's place in the episode); ``Speaker`` is the subject.
Each clip is the utterance, so its transcript row spans ``0 .. EndTime - StartTime`` on the clip's clock.
Files that are not valid UTF-8 are read as Windows-1252 (with a warning).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    ProblemLog,
    TranscriptEntry,
    register_corpus,
)

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train", "train_splits"),
    "dev": ("val", "dev_splits_complete"),
    "test": ("test", "output_repeated_splits_test"),
}
"""CSV prefix → (manifest split, clip folder)."""
EMOTIONS: frozenset[str] = frozenset({"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"})
SENTIMENTS: frozenset[str] = frozenset({"positive", "negative", "neutral"})
COLUMNS: tuple[str, ...] = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
                            "Season", "Episode", "StartTime", "EndTime")
CLIP_SUFFIXES: tuple[str, ...] = (".mp4", ".MP4")
_TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?$")


def parse_time(text: str) -> float | None:
    """``HH:MM:SS,mmm`` (or ``.mmm``) → seconds; None if it does not match."""
    match = _TIME.match(text.strip())
    if match is None:
        return None
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int((millis or "0").ljust(3, "0")) / 1000


@register_corpus
class MeldAdapter(CorpusAdapter):
    """MELD ``*_sent_emo.csv`` tables → one manifest row and transcript per utterance clip."""

    name: ClassVar[str] = "meld"
    summary: ClassVar[str] = "MELD: utterance clips, 7 emotions, 3 sentiments, transcripts"

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read every split table present; see the module docstring."""
        reading = CorpusReading(self.name, root, media)
        log = reading.log
        used: set[Path] = set()
        for prefix, (split, folder_name) in SPLITS.items():
            found = sorted(root.rglob(f"{prefix}_sent_emo.csv"))
            if not found:
                continue
            path = found[0]
            reading.sources.append(log.name(path))
            folders = sorted(p for p in media.rglob(folder_name) if p.is_dir())
            folder = folders[0] if folders else media / folder_name
            if not folders:
                log.warning(media, None, f"no {folder_name}/ folder for the {split} clips")
            clips = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
            rows = _read_table(path, log)
            for line, record in rows:
                parsed = _parse_row(record, path, line, log)
                if parsed is None:
                    continue
                dialogue, utterance, labels, speaker, text, duration = parsed
                stem = f"dia{dialogue}_utt{utterance}"
                vid = f"{split}_{stem}"
                if not reading.claim(vid, path, line, what="utterance",
                                     hint=f": Dialogue_ID/Utterance_ID {dialogue}/{utterance} appear twice"):
                    continue
                clip = next((clips[stem + s] for s in CLIP_SUFFIXES if stem + s in clips), None)
                if clip is None:
                    log.warning(path, line, f"label without media: no {stem}.mp4 in {log.name(folder)}; left "
                                            "out of the manifest")
                    continue
                used.add(clip)
                reading.items.append(MediaItem(video_id=vid, path=str(clip), split=split,
                                               subject=speaker or None, corpus=self.name, labels=labels))
                if text:
                    reading.transcripts.append(TranscriptEntry(video_id=vid, text=(text,), start_s=(0.0,),
                                                       end_s=(duration,), source_file=log.name(path)))
            for clip in sorted(clips.values()):
                if clip not in used and clip.suffix in CLIP_SUFFIXES:
                    log.warning(clip, None, "media file without labels; not in the manifest")
        if not reading.sources:
            log.error(root, None, "no {train,dev,test}_sent_emo.csv found under the root")
        # Unused clips were reported per split folder above (MELD's clips are not found by stem).
        return reading.result(report_unreferenced=False)


def _read_table(path: Path, log: ProblemLog) -> list[tuple[int, dict[str, str]]]:
    """``(line, row)`` pairs of a MELD table; the line is where the (possibly multi-line) row ends."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        log.error(path, None, f"cannot read ({exc})")
        return []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        log.warning(path, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start}); read as Windows-1252")
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    absent = [c for c in COLUMNS if c not in header]
    if absent:
        log.error(path, 1, f"missing column(s) {absent}; expected MELD's {list(COLUMNS)}")
        return []
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for record in reader:
            rows.append((reader.line_num, record))
    except csv.Error as exc:
        log.error(path, reader.line_num, f"malformed CSV ({exc})")
    return rows


def _parse_row(record: dict[str, str], path: Path, line: int, log: ProblemLog,
               ) -> tuple[int, int, dict[str, Any], str, str, float] | None:
    """``(dialogue, utterance, labels, speaker, text, duration_s)`` of one row; None if unusable."""
    try:
        dialogue = int(record["Dialogue_ID"])
        utterance = int(record["Utterance_ID"])
    except (TypeError, ValueError):
        log.error(path, line, f"Dialogue_ID/Utterance_ID {record.get('Dialogue_ID')!r}/"
                              f"{record.get('Utterance_ID')!r} are not integers")
        return None
    emotion: str | None = (record.get("Emotion") or "").strip().lower()
    if emotion not in EMOTIONS:
        log.warning(path, line, f"emotion {emotion!r} is not one of {sorted(EMOTIONS)}; left empty")
        emotion = None
    sentiment: str | None = (record.get("Sentiment") or "").strip().lower()
    if sentiment not in SENTIMENTS:
        log.warning(path, line, f"sentiment {sentiment!r} is not one of {sorted(SENTIMENTS)}; left empty")
        sentiment = None
    start = parse_time(record.get("StartTime") or "")
    end = parse_time(record.get("EndTime") or "")
    duration = 0.0
    if start is None or end is None:
        log.warning(path, line, f"StartTime/EndTime {record.get('StartTime')!r}/{record.get('EndTime')!r} "
                                "are not HH:MM:SS,mmm; episode times left empty")
    elif end < start:
        log.warning(path, line, f"EndTime {record['EndTime']} is before StartTime {record['StartTime']}; "
                                "the transcript row gets no duration")
    else:
        duration = end - start
    labels: dict[str, Any] = {
        "emotion": emotion, "sentiment": sentiment, "dialogue_id": dialogue, "utterance_id": utterance,
        "season": _int_or_none(record.get("Season")), "episode": _int_or_none(record.get("Episode")),
        "episode_start_s": start, "episode_end_s": end,
    }
    return dialogue, utterance, labels, (record.get("Speaker") or "").strip(), \
        (record.get("Utterance") or "").strip(), duration


def _int_or_none(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None
