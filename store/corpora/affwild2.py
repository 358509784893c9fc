"""Aff-Wild2 (ABAW Valence-Arousal Estimation Challenge) corpus adapter.

Reads ``VA_Estimation_Challenge/{Train_Set,Validation_Set,Test_Set}/<video>.txt`` (``--root`` may be the
folder holding ``VA_Estimation_Challenge`` or that folder itself): a header line ``valence,arousal``,
then one ``v,a`` line per video frame (line 2 = frame 1, i.e. decoder frame index 0). Values are floats
in [-1, 1], sometimes in scientific notation; ``-5`` in either column marks an unannotated frame.

* Names ending in ``_left`` / ``_right`` are the two people of one source video: the media file is
  looked up without the suffix, and the side is recorded (``side``, ``source_video`` label columns).
* The frame rate is probed from the media file (the number in names like ``<id>-<fps>-<WxH>`` is not
  reliable), and becomes the label tracks' clock: ``time_s = frame / fps``.
* ``labels/valence`` and ``labels/arousal`` are imported for the train and validation sets, with
  unannotated (``-5``) and out-of-range frames masked. Test-set files hold no real labels (public copies
  are placeholders), so test videos become manifest rows without label tracks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    probe_or_report,
    register_corpus,
)

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

CHALLENGE_FOLDER = "VA_Estimation_Challenge"
SPLIT_FOLDERS: dict[str, str] = {"Train_Set": "train", "Validation_Set": "val", "Test_Set": "test"}
"""Annotation folder → split."""
LABELED_SPLITS = frozenset({"train", "val"})
"""Splits whose files hold real labels (imported as tracks)."""
HEADER = "valence,arousal"
INVALID = -5.0
"""The value marking an unannotated frame."""
SIDES: tuple[str, ...] = ("left", "right")
FRAME_COUNT_TOLERANCE = 0.01
"""A label file may differ from the probed frame count by this fraction (or 2 frames) unreported."""


@dataclass(frozen=True, kw_only=True)
class _VAFile:
    """One parsed annotation file."""

    valence: np.ndarray
    arousal: np.ndarray
    valid: np.ndarray


@register_corpus
class AffWild2Adapter(CorpusAdapter):
    """ABAW VA annotation files → per-frame valence/arousal tracks on each video's real frame clock."""

    name: ClassVar[str] = "aff-wild2"
    summary: ClassVar[str] = "Aff-Wild2 / ABAW VA: per-frame valence, arousal (-5 = unannotated)"
    track_descriptions: ClassVar[dict[str, str]] = {
        "valence": "Aff-Wild2 per-frame valence in [-1, 1] (ABAW VA); -5 rows masked",
        "arousal": "Aff-Wild2 per-frame arousal in [-1, 1] (ABAW VA); -5 rows masked",
    }

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read every split folder present; see the module docstring for the rules."""
        reading = CorpusReading(self.name, root, media, track_descriptions=self.track_descriptions)
        log = reading.log
        base = root / CHALLENGE_FOLDER if (root / CHALLENGE_FOLDER).is_dir() else root
        folders = [(base / folder, split) for folder, split in SPLIT_FOLDERS.items()
                   if (base / folder).is_dir()]
        if not folders:
            return reading.refuse(base, f"no {', '.join(SPLIT_FOLDERS)} folder; point --root at the folder "
                                        f"holding {CHALLENGE_FOLDER}")
        for folder, split in folders:
            for path in sorted(folder.glob("*.txt")):
                name = path.stem
                rel = log.name(path)
                reading.sources.append(rel)
                if not reading.claim(name, path, None, hint="; remove one"):
                    continue
                parsed = _parse_file(path, log, labeled=split in LABELED_SPLITS)
                if parsed is None:
                    continue
                source_video, side = _source_of(name)
                media_path = reading.find_media(source_video, path, None, what="label file")
                if media_path is None:
                    continue
                info = probe_or_report(media_path, log, f"no label tracks for {name}")
                fps = info.fps if info is not None else None
                n_rows = parsed.valid.shape[0]
                if info is not None and fps is None:
                    log.warning(media_path, None, f"FFmpeg reports no frame rate; no label tracks for {name}")
                if info is not None and info.n_frames is not None and fps is not None:
                    gap = abs(n_rows - info.n_frames)
                    if gap > max(2, FRAME_COUNT_TOLERANCE * info.n_frames):
                        log.warning(path, None, f"{n_rows} label rows but the video has {info.n_frames} "
                                                "frames; rows are kept on the frame clock as numbered")
                reading.items.append(MediaItem(
                    video_id=name, path=str(media_path), split=split, corpus=self.name,
                    labels={"source_video": source_video, "side": side,
                            "fps": None if fps is None else round(float(fps), 6), "n_label_rows": n_rows}))
                if split in LABELED_SPLITS and fps is not None and n_rows:
                    time_s = np.arange(n_rows, dtype=np.float64) / fps
                    for track, values in (("valence", parsed.valence), ("arousal", parsed.arousal)):
                        reading.tracks.append(TrackEntry(track=track, video_id=name, values=values,
                                                 valid=parsed.valid, time_s=time_s, rate_hz=float(fps),
                                                 source_file=rel))
        return reading.result()


def _source_of(name: str) -> tuple[str, str | None]:
    """``(source video stem, side)``: ``x_left`` → ``("x", "left")``, ``x`` → ``("x", None)``."""
    for side in SIDES:
        suffix = f"_{side}"
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], side
    return name, None


def _parse_file(path: Path, log: ProblemLog, *, labeled: bool) -> _VAFile | None:
    """Parse one annotation file; None (with an error recorded) when it cannot be used."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.error(path, None, f"cannot read ({type(exc).__name__}: {exc})")
        return None
    if not lines or lines[0].strip().replace(" ", "").lower() != HEADER:
        found = lines[0].strip() if lines else "an empty file"
        log.error(path, 1, f"expected the header {HEADER!r}, found {found!r}")
        return None
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()  # trailing blank lines are harmless; blank lines inside would shift frames
    n = len(lines) - 1
    valence = np.zeros(n, dtype=np.float32)
    arousal = np.zeros(n, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    errors_before = len(log.problems)
    for row, text in enumerate(lines[1:]):
        line = row + 2
        fields = text.split(",")
        if len(fields) != 2:
            log.error(path, line, f"expected 'valence,arousal', got {text.strip()!r} (one line per frame)")
            continue
        v, a = parse_number(fields[0]), parse_number(fields[1])
        if v is None or a is None:
            log.error(path, line, f"not two finite numbers: {text.strip()!r}")
            continue
        if v == INVALID or a == INVALID:
            continue  # unannotated frame: masked, not a problem
        if labeled and not (-1.0 <= v <= 1.0 and -1.0 <= a <= 1.0):
            log.warning(path, line, f"valence/arousal {v:g},{a:g} outside [-1, 1]; frame masked")
            continue
        valence[row], arousal[row], valid[row] = v, a, True
    if any(p.severity == "error" for p in log.problems[errors_before:]):
        return None
    return _VAFile(valence=valence, arousal=arousal, valid=valid)
