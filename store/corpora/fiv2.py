"""ChaLearn First Impressions v2 corpus adapter: Big Five trait scores and transcripts per 15-s clip.

Reads ``annotation_{training,validation,test}.pkl`` (``{trait: {"<youtubeId>.<n>.mp4": score}}``) and
``transcription_{training,validation,test}.pkl`` (``{"<clip>.mp4": text}``) found anywhere under
``--root``. They are Python 2 pickles: they are loaded with :func:`~affectcache.store.corpora.safe_pickle.
load_data_pickle`, which refuses anything but builtin containers, strings and numbers (a hostile pickle
cannot run code), with ``latin1`` for Python 2 strings; text that was UTF-8 bytes is repaired.

Manifest rows: ``video_id`` = the clip name without ``.mp4`` (SCD-MMPSR's naming, e.g.
``LNM1i-a9q_A.005``); label columns ``extraversion, neuroticism, agreeableness, conscientiousness,
interview, openness`` (scores in [0, 1]) plus ``non-neuroticism``, the same score under SCD-MMPSR's name
(the corpus's "neuroticism" score is rated as emotional stability; SCD renames it, it does not invert it).
Transcripts become one ``transcript`` row spanning the whole clip (the probed media duration).
"""

from __future__ import annotations

import logging
import pickle
from typing import TYPE_CHECKING, Any, ClassVar

from affectcache.extractors.core.records import MediaItem
from affectcache.store.corpora.base import (
    CorpusAdapter,
    CorpusImport,
    CorpusReading,
    ProblemLog,
    register_corpus,
)
from affectcache.store.corpora.safe_pickle import UnsafePickleError, load_data_pickle, repair_utf8

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

TRAITS: tuple[str, ...] = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "interview",
                           "openness")
"""The annotated traits (keys of an annotation pickle)."""
SCD_ALIASES: dict[str, str] = {"non-neuroticism": "neuroticism"}
"""Extra label columns under SCD-MMPSR's names → the trait they copy."""
SPLITS: dict[str, str] = {"training": "train", "validation": "val", "test": "test"}
"""File-name split → manifest split."""
CLIP_SUFFIX = ".mp4"


@register_corpus
class FirstImpressionsAdapter(CorpusAdapter):
    """FIv2 annotation and transcription pickles → one manifest row (and transcript) per clip."""

    name: ClassVar[str] = "fiv2"
    summary: ClassVar[str] = "ChaLearn First Impressions v2: Big Five + interview scores, transcripts"

    def read(self, root: Path, media: Path) -> CorpusImport:
        """Read every split's pickles present; see the module docstring."""
        reading = CorpusReading(self.name, root, media)
        log = reading.log
        found_any = False
        for file_split, split in SPLITS.items():
            ann_path = _find(root, f"annotation_{file_split}.pkl", log)
            text_path = _find(root, f"transcription_{file_split}.pkl", log)
            if ann_path is None:
                if text_path is not None:
                    log.warning(text_path, None, f"transcripts without annotation_{file_split}.pkl; not read")
                continue
            found_any = True
            reading.sources.append(log.name(ann_path))
            scores = _read_annotations(ann_path, log)
            texts: dict[str, str] = {}
            if text_path is not None:
                reading.sources.append(log.name(text_path))
                texts = _read_transcripts(text_path, log)
                for clip in sorted(texts.keys() - scores.keys()):
                    log.warning(text_path, None, f"transcript for {clip!r}, which has no annotation; unused")
            for clip, labels in scores.items():
                vid = clip.removesuffix(CLIP_SUFFIX)
                if not reading.claim(vid, ann_path, None, what="clip"):
                    continue
                media_path = reading.find_media(vid, ann_path, None)
                if media_path is None:
                    continue
                for alias, trait in SCD_ALIASES.items():
                    labels[alias] = labels.get(trait)
                reading.items.append(MediaItem(video_id=vid, path=str(media_path), split=split,
                                               corpus=self.name, subject=vid.split(".")[0], labels=labels))
                text = texts.get(clip)
                if text and text_path is not None:
                    reading.add_transcript(vid, text, media_path, text_path)
        if not found_any:
            log.error(root, None, "no annotation_{training,validation,test}.pkl found under the root")
        return reading.result()


def _find(root: Path, filename: str, log: ProblemLog) -> Path | None:
    found = sorted(root.rglob(filename))
    if len(found) > 1:
        log.warning(found[1], None, f"a second {filename}; only {log.name(found[0])} is read")
    return found[0] if found else None


def _load(path: Path, log: ProblemLog) -> Any:
    try:
        return load_data_pickle(path.read_bytes())
    except UnsafePickleError as exc:
        log.error(path, None, f"refused: {exc}")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        log.error(path, None, f"not a readable pickle ({type(exc).__name__}: {exc})")
    return None


def _read_annotations(path: Path, log: ProblemLog) -> dict[str, dict[str, Any]]:
    """Clip name → {trait: score or None}, in first-seen clip order."""
    data = _load(path, log)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        log.error(path, None, f"expected {{trait: {{clip: score}}}}, got {type(data).__name__}")
        return {}
    traits = {repair_utf8(str(k)): v for k, v in data.items()}
    absent = [t for t in TRAITS if t not in traits]
    if absent:
        log.error(path, None, f"missing trait(s) {absent}; found {sorted(traits)}")
        return {}
    for extra in sorted(traits.keys() - set(TRAITS)):
        log.warning(path, None, f"unknown trait {extra!r}; not imported")
    clips: dict[str, dict[str, Any]] = {}
    for trait in TRAITS:
        for raw_clip in traits[trait]:
            clips.setdefault(repair_utf8(str(raw_clip)), {})
    for trait in TRAITS:
        scores = {repair_utf8(str(k)): v for k, v in traits[trait].items()}
        for clip, labels in clips.items():
            value = scores.get(clip)
            if value is None:
                log.warning(path, None, f"{clip!r} has no {trait} score; left empty")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                log.warning(path, None, f"{clip!r}: {trait} {value!r} is not a number in [0, 1]; left empty")
                value = None
            labels[trait] = None if value is None else float(value)
    return clips


def _read_transcripts(path: Path, log: ProblemLog) -> dict[str, str]:
    data = _load(path, log)
    if data is None:
        return {}
    if not isinstance(data, dict):
        log.error(path, None, f"expected {{clip: text}}, got {type(data).__name__}")
        return {}
    out: dict[str, str] = {}
    for clip, text in data.items():
        if not isinstance(text, str):
            log.warning(path, None, f"transcript of {clip!r} is {type(text).__name__}, not text; not used")
            continue
        out[repair_utf8(str(clip))] = repair_utf8(text).strip()
    return out
