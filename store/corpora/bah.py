"""BAH (Behavioural Ambivalence/Hesitancy) corpus adapter: video-level A/H labels and transcripts.

Reads the official video-level split files ``dataset-splits/video-level/BAH_DB/split-0/{train,val,
test}.txt`` (or the first ``video-level/**/split-0`` folder under ``--root``): one line per video,
``<relative video path>,<label>,<transcript>``. The transcript itself contains commas, so only the
first two commas separate fields. Labels are the ids of ``class_id.yaml`` (``With A-H: 1``,
``No A-H: 0``; these defaults are used, with a warning, when the file is absent).

Video paths are relative to ``--media`` (default the root), e.g. ``Videos/<pid>/Visite_1/<pid>_Question_
...mp4``; the participant id (the folder after ``Videos``) becomes ``subject``, the file stem the
``video_id`` (characters an id cannot hold become ``_``). Label columns: ``ah`` (0/1) and ``ah_class``
(its name). Non-empty transcripts become one ``transcript`` row spanning the video (probed duration).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    ProblemLog,
    register_corpus,
    safe_video_id,
)

logger = logging.getLogger(__name__)

SPLIT_DIR = Path("dataset-splits/video-level/BAH_DB/split-0")
"""Where the official video-level split files live under the root."""
SPLIT_FILES: dict[str, str] = {"train.txt": "train", "val.txt": "val", "test.txt": "test"}
CLASS_FILE = "class_id.yaml"
DEFAULT_CLASSES: dict[str, int] = {"No A-H": 0, "With A-H": 1}
"""``class_id.yaml`` as the BAH repository ships it."""


@register_corpus
class BahAdapter(CorpusAdapter):
    """BAH video-level split files → one manifest row (and transcript) per video."""

    name: ClassVar[str] = "bah"
    summary: ClassVar[str] = "BAH: video-level ambivalence/hesitancy (0/1) with transcripts"

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read the split files and class ids; see the module docstring."""
        reading = CorpusReading(self.name, root, media)
        log = reading.log
        split_dir = _split_dir(root)
        if split_dir is None:
            return reading.refuse(root, f"no {SPLIT_DIR} folder (nor any video-level/**/split-0) under the "
                                        "root")
        classes, class_source = _read_classes(root, log)
        names = {v: k for k, v in classes.items()}
        if class_source:
            reading.sources.append(class_source)
        for filename, split in SPLIT_FILES.items():
            path = split_dir / filename
            if not path.is_file():
                log.warning(path, None, f"split file missing; no {split} videos")
                continue
            reading.sources.append(log.name(path))
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                log.error(path, None, f"cannot read ({type(exc).__name__}: {exc})")
                continue
            if not any(text.strip() for text in lines):
                log.warning(path, None, f"split file is empty; no {split} videos")
            for line_no, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                parts = text.split(",", 2)  # the transcript keeps its own commas
                if len(parts) < 2:
                    log.error(path, line_no, f"expected '<path>,<label>,<transcript>', got {text[:80]!r}")
                    continue
                rel_video = parts[0].strip()
                if os.path.isabs(rel_video) or ".." in Path(rel_video).parts:
                    log.error(path, line_no, f"video path {rel_video!r} leaves --media (absolute, or with "
                                             "'..'); expected a path under it, such as Videos/P001/...")
                    continue
                transcript = parts[2].strip() if len(parts) == 3 else ""
                vid = safe_video_id(Path(rel_video).stem)
                if not reading.claim(vid, path, line_no):
                    continue
                label: Any = None
                try:
                    label = int(parts[1].strip())
                except ValueError:
                    log.error(path, line_no, f"label {parts[1].strip()!r} is not an integer class id")
                    continue
                if label not in names:
                    log.warning(path, line_no, f"label {label} is not a class id of {CLASS_FILE} "
                                               f"({sorted(names)}); left empty")
                    label = None
                media_path = Path(os.path.abspath(media / rel_video))
                if not media_path.is_file():
                    log.warning(path, line_no, f"label without media: {rel_video} not under {media}; "
                                               "left out of the manifest")
                    continue
                reading.use(media_path)
                parts_path = Path(rel_video).parts
                subject = parts_path[1] if len(parts_path) > 2 and parts_path[0] == "Videos" else None
                reading.items.append(MediaItem(video_id=vid, path=str(media_path), split=split,
                                               subject=subject, corpus=self.name,
                                               labels={"ah": label, "ah_class": names.get(label)
                                                       if label is not None else None}))
                if transcript:
                    reading.add_transcript(vid, transcript, media_path, path)
        return reading.result()


def _split_dir(root: Path) -> Path | None:
    if (root / SPLIT_DIR).is_dir():
        return root / SPLIT_DIR
    found = sorted(p for p in root.rglob("split-0") if p.is_dir() and "video-level" in p.parts)
    return found[0] if found else None


def _read_classes(root: Path, log: ProblemLog) -> tuple[dict[str, int], str | None]:
    """Class name → id from ``class_id.yaml`` (defaults with a warning when absent)."""
    import yaml

    found = sorted(root.rglob(CLASS_FILE))
    if not found:
        log.warning(root, None, f"no {CLASS_FILE}; using {DEFAULT_CLASSES}")
        return dict(DEFAULT_CLASSES), None
    path = found[0]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.error(path, None, f"cannot read ({type(exc).__name__}: {exc})")
        return dict(DEFAULT_CLASSES), log.name(path)
    if (not isinstance(data, dict) or not data
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values())):
        log.error(path, None, f"expected '<class name>: <integer id>' lines, got {data!r}")
        return dict(DEFAULT_CLASSES), log.name(path)
    return {str(k): int(v) for k, v in data.items()}, log.name(path)
