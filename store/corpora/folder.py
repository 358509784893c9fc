"""The ``folder`` adapter: a manifest from a folder of your own media files (no annotation files).

Every file under ``--root`` (or ``--media``) whose path matches one of the glob patterns (default: any
video suffix, recursively) is probed from its headers. Each becomes a row whose ``video_id`` is the file
stem made valid (characters an id cannot hold become ``_``; a stem seen before gets ``-2``, ``-3``, ...),
with label columns ``source_name`` (the path relative to the folder: the original name), ``duration_s``,
``fps`` and ``has_audio``. Files that cannot be read are listed as problems (warnings: left out of the
manifest; refused under ``--strict``).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import ClassVar

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    VIDEO_SUFFIXES,
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    probe_or_report,
    register_corpus,
    safe_video_id,
)

DEFAULT_PATTERNS: tuple[str, ...] = tuple(f"*{suffix}" for suffix in VIDEO_SUFFIXES)
"""Media files the adapter takes without ``--glob``: every video suffix, in any sub-folder."""


@register_corpus
class FolderAdapter(CorpusAdapter):
    """Any folder of media files; ids from file names.

    Args:
        patterns: Glob patterns matched against each file's path relative to the folder (``*`` also
            crosses folders), case-insensitively; default every video suffix.
    """

    name = "folder"
    summary: ClassVar[str] = "any folder of media files (--glob to choose them); ids from file names"

    def __init__(self, patterns: tuple[str, ...] | list[str] | None = None) -> None:
        self.patterns = tuple(p.lower() for p in (patterns or DEFAULT_PATTERNS))

    def read(self, root: Path, media: Path) -> CorpusImport:
        reading = CorpusReading(self.name, root, media)
        taken: set[str] = set()
        for path in self._files(media):
            relative = path.relative_to(media).as_posix()
            info = probe_or_report(path, reading.log, "left out of the manifest")
            if info is None:
                continue
            video_id = _unique(safe_video_id(path.stem) or "video", taken)
            if not reading.claim(video_id, path, None):
                continue
            reading.use(path)
            reading.items.append(MediaItem(
                video_id=video_id, path=str(path), corpus=self.name,
                labels={"source_name": relative, "duration_s": round(float(info.duration_s), 3),
                        "fps": round(float(info.fps), 3) if info.fps else "", "has_audio": info.has_audio}))
        if not reading.items and not reading.log.problems:
            reading.log.error(media, None, f"no file matches {list(self.patterns)}; check --root/--glob")
        return reading.result(report_unreferenced=False)

    def _files(self, folder: Path) -> list[Path]:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                relative = path.relative_to(folder).as_posix().lower()
                if not filename.startswith(".") and any(fnmatch.fnmatch(relative, p) for p in self.patterns):
                    found.append(path)
        return found


def _unique(video_id: str, taken: set[str]) -> str:
    candidate, n = video_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{video_id}-{n}"
    taken.add(candidate)
    return candidate
