"""Semantic lexicons: one short affect-aware label per handcrafted feature (LaScA §3.1, Appendix B).

A lexicon is a versioned JSON file ``<name>.v<version>.json``::

    {"format": "affectcache-lexicon/1", "name": ..., "version": N, "description": ..., "source": ...,
     "fill_rule": ..., "labels": {feature: label}, "filled": [features labelled by fill_rule]}

Shipped lexicons live in the package (``extractors/lasca/lexicons/``): ``lasca-paper`` (the paper's Tables
B.1/B.2, completed by a documented rule) and ``feature-name`` (the label is the feature name in words, the
paper's Table 7 ablation). Generated lexicons (``affectcache lexicon generate``) are saved under
``$AFFECTCACHE_HOME/lexicons/`` with the next free version; a shipped name is never reused.

Feature names follow the paper: ``Face_<MediaPipe blendshape>`` and ``mfcc_<k>``. A lexicon's identity is
its :attr:`Lexicon.sha256` (over name, version and labels), which goes into the provenance of everything
built from it.

Answers of a language model are checked by :func:`parse_lexicon_answer` against Appendix A's rules (a
Python/JSON dict, every feature covered and nothing else, 3-6 words per value, no punctuation) before a
lexicon is saved; a bad answer raises :class:`LexiconValidationError` listing every reason.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.extractors.common.assets import assets_home
from affectcache.extractors.core.atomic import atomic_path
from affectcache.extractors.core.errors import ExtractorError
from affectcache.extractors.core.provenance import stable_hash, utc_now
from affectcache.extractors.visual.blendshapes import BLENDSHAPE_NAMES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.extractors.engines.textgen import TextGenerator

logger = logging.getLogger(__name__)

LEXICON_FORMAT = "affectcache-lexicon/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "lexicons"
FACE_PREFIX = "Face_"
MFCC_PREFIX = "mfcc_"
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.v(?P<version>[1-9][0-9]*)\.json$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VALUE_OK = re.compile(r"^[A-Za-z0-9 ]+$")
MIN_WORDS, MAX_WORDS = 3, 6

LEXICON_INSTRUCTION = (
    "You are an expert in affective computing and multimodal emotion modelling. Your task is to convert "
    "low-level video (facial blendshapes) and audio (acoustic features such as MFCCs) feature names into "
    "compact semantic labels that combine: 1) A brief physical cue 2) A brief affect cue STRICT RULES: "
    "1. Output must be a valid Python dictionary. 2. No explanations outside the dictionary. 3. Each value "
    "3 to 6 words. 4. No full sentences. 5. No punctuation inside values. 6. Format: \"<expression cue> "
    "<affect cue>\" 7. Video: describe visible movement. 8. Audio: describe acoustic change. 9. Compact "
    "affect cue. 10. Avoid deterministic language. 11. Keep vocabulary consistent. 12. Optimise for "
    "SentenceTransformer embeddings. 13. Prioritise reproducibility. Example format: 'feature_name': "
    "feature meaning and affect indication Return only the dictionary."
)
"""The paper's Appendix A instruction, verbatim."""


class LexiconError(ExtractorError):
    """A lexicon cannot be found, read or saved."""


class LexiconValidationError(LexiconError):
    """A generated answer breaks the lexicon rules; ``reasons`` lists every problem."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(f"lexicon answer rejected ({len(self.reasons)} problems): "
                         + "; ".join(self.reasons))


def lasca_feature_names(n_mfcc: int = 15) -> tuple[str, ...]:
    """The paper's feature names: MediaPipe's 52 blendshapes (``Face_*``), then ``mfcc_0..n_mfcc-1``."""
    return (*(FACE_PREFIX + n for n in BLENDSHAPE_NAMES), *(f"{MFCC_PREFIX}{k}" for k in range(n_mfcc)))


@dataclass(frozen=True, kw_only=True)
class Lexicon:
    """A loaded lexicon."""

    name: str
    """Lexicon name (``lasca-paper``)."""
    version: int
    """Version number; a new generation never overwrites an old one."""
    labels: Mapping[str, str]
    """Feature name -> label."""
    description: str = ""
    """What it is."""
    source: Any = ""
    """Where the labels come from (paper reference, or the generating backend, model and prompt hash)."""
    fill_rule: str = ""
    """How features the source does not label were filled."""
    filled: tuple[str, ...] = ()
    """Features labelled by ``fill_rule`` rather than by the source."""
    path: Path | None = field(default=None, compare=False)
    """File it was read from."""

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def sha256(self) -> str:
        """Identity of the content: hash of name, version and labels."""
        return stable_hash({"name": self.name, "version": self.version, "labels": dict(self.labels)})

    def label(self, feature: str) -> str:
        """The label of ``feature``; :class:`LexiconError` if the lexicon does not cover it."""
        try:
            return self.labels[feature]
        except KeyError:
            raise LexiconError(f"lexicon {self.ref} has no label for feature {feature!r}") from None

    def missing(self, features: Sequence[str]) -> list[str]:
        """Features of ``features`` the lexicon does not label."""
        return [f for f in features if f not in self.labels]

    def to_json(self) -> dict[str, Any]:
        """The file content."""
        return {"format": LEXICON_FORMAT, "name": self.name, "version": self.version,
                "description": self.description, "source": self.source, "fill_rule": self.fill_rule,
                "labels": dict(self.labels), "filled": list(self.filled)}


def user_lexicon_dir() -> Path:
    """Where generated lexicons are saved: ``$AFFECTCACHE_HOME/lexicons``."""
    return assets_home() / "lexicons"


def _lexicon_files() -> dict[tuple[str, int], Path]:
    files: dict[tuple[str, int], Path] = {}
    for folder in (SHIPPED_DIR, user_lexicon_dir()):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            m = _FILE_NAME.match(path.name)
            if m:
                files.setdefault((m["name"], int(m["version"])), path)
    return files


def available_lexicons() -> dict[str, list[int]]:
    """Lexicon name -> sorted versions, shipped and generated."""
    out: dict[str, list[int]] = {}
    for name, version in sorted(_lexicon_files()):
        out.setdefault(name, []).append(version)
    return out


def shipped_lexicons() -> list[str]:
    """Names of the lexicons shipped in the package."""
    return sorted({m["name"] for p in SHIPPED_DIR.glob("*.json") if (m := _FILE_NAME.match(p.name))})


def read_lexicon_file(path: str | Path) -> Lexicon:
    """Read and check a lexicon file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LexiconError(f"cannot read lexicon {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != LEXICON_FORMAT:
        raise LexiconError(f"{path}: not an affectcache lexicon (format {LEXICON_FORMAT!r} expected)")
    labels = data.get("labels")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                               for k, v in labels.items()):
        raise LexiconError(f"{path}: 'labels' must map feature names to non-empty strings")
    return Lexicon(name=str(data["name"]), version=int(data["version"]), labels=labels,
                   description=str(data.get("description", "")), source=data.get("source", ""),
                   fill_rule=str(data.get("fill_rule", "")), filled=tuple(data.get("filled", ())), path=path)


def load_lexicon(name: str, version: int | None = None) -> Lexicon:
    """A lexicon by name (latest version unless ``version`` is given), or by file path (``*.json``).

    Raises:
        LexiconError: Unknown name or version (the message lists what is available).
    """
    if name.endswith(".json"):
        return read_lexicon_file(name)
    files = _lexicon_files()
    versions = sorted(v for (n, v) in files if n == name)
    if not versions:
        raise LexiconError(f"no lexicon named {name!r}; available: {available_lexicons()}")
    wanted = versions[-1] if version is None else version
    if (name, wanted) not in files:
        raise LexiconError(f"lexicon {name!r} has no version {wanted}; available versions: {versions}")
    lexicon = read_lexicon_file(files[(name, wanted)])
    if (lexicon.name, lexicon.version) != (name, wanted):
        raise LexiconError(f"{files[(name, wanted)]} says it is {lexicon.ref}, its file name says "
                           f"{name}@{wanted}")
    return lexicon


# ---- the feature-name lexicon (the paper's Table 7 ablation) ----------------------------------------
def feature_name_label(feature: str) -> str:
    """The feature name in lowercase words: ``Face_browDownLeft`` -> ``brow down left``,
    ``mfcc_3`` -> ``mfcc 3``."""
    core = feature.removeprefix(FACE_PREFIX)
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", core).replace("_", " ").split()
    return " ".join(w.lower() for w in words)


# ---- validating and saving generated lexicons ---------------------------------------------------------
def lexicon_prompt(features: Sequence[str]) -> str:
    """Appendix A's instruction followed by the feature names to label."""
    return LEXICON_INSTRUCTION + "\n\nFeature names:\n" + "\n".join(features) + "\n"


def parse_lexicon_answer(answer: str, features: Sequence[str]) -> dict[str, str]:
    """The labels in a model's answer, checked against the lexicon rules.

    Accepts a Python or JSON dict literal, optionally inside a Markdown code fence.

    Raises:
        LexiconValidationError: Not a dict of strings, features missing or unknown, or values with
            fewer than 3 or more than 6 words or with punctuation; every problem is listed.
    """
    text = re.sub(r"```[a-zA-Z]*", "", answer).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise LexiconValidationError([f"no dictionary found in the answer (starts {answer[:60]!r})"])
    if text[:start].strip() or text[end + 1:].strip():
        logger.warning("lexicon answer has text outside the dictionary (ignored)")
    literal = text[start: end + 1]
    parsed: Any = None
    try:
        parsed = ast.literal_eval(literal)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            parsed = json.loads(literal)
        except json.JSONDecodeError as exc:
            raise LexiconValidationError([f"the dictionary is neither a Python nor a JSON literal: {exc}"]
                                         ) from None
    if not isinstance(parsed, dict):
        raise LexiconValidationError([f"expected a dict, got {type(parsed).__name__}"])
    reasons: list[str] = []
    missing = [f for f in features if f not in parsed]
    if missing:
        more = " ..." if len(missing) > 8 else ""
        reasons.append(f"{len(missing)} features not covered: {missing[:8]}{more}")
    unknown = sorted(str(k) for k in parsed if k not in set(features))
    if unknown:
        reasons.append(f"unknown features: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    labels: dict[str, str] = {}
    for key, value in parsed.items():
        if not isinstance(value, str):
            reasons.append(f"{key}: value must be a string, got {type(value).__name__}")
            continue
        words = value.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS:
            reasons.append(f"{key}: {len(words)} words in {value!r} (need {MIN_WORDS}-{MAX_WORDS})")
        if not _VALUE_OK.match(value.strip() or "!"):
            reasons.append(f"{key}: punctuation or symbols in {value!r}")
        labels[str(key)] = " ".join(words)
    if reasons:
        raise LexiconValidationError(reasons)
    return {f: labels[f] for f in features}


def save_lexicon(name: str, labels: Mapping[str, str], *, source: Any, description: str = "",
                 directory: str | Path | None = None) -> Lexicon:
    """Save labels as the next version of lexicon ``name`` (atomically; never overwrites a version)."""
    if not _NAME.match(name):
        raise LexiconError(f"lexicon name must match {_NAME.pattern}, got {name!r}")
    if name in shipped_lexicons():
        raise LexiconError(f"{name!r} is a shipped lexicon; give the generated one another name")
    folder = Path(directory) if directory is not None else user_lexicon_dir()
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(m["version"]) for p in folder.glob(f"{name}.v*.json")
             if (m := _FILE_NAME.match(p.name)) and m["name"] == name]
    taken += available_lexicons().get(name, [])
    version = max(taken, default=0) + 1
    lexicon = Lexicon(name=name, version=version, labels=dict(labels), description=description,
                      source=source)
    target = folder / f"{name}.v{version}.json"
    try:
        # Exclusive: another process may save the same version meanwhile; never overwrite a version.
        with atomic_path(target, exclusive=True) as tmp:
            tmp.write_text(json.dumps(lexicon.to_json(), indent=2) + "\n", encoding="utf-8")
    except FileExistsError as exc:
        raise LexiconError(f"{target} appeared while saving; run again") from exc
    logger.info("saved lexicon %s -> %s", lexicon.ref, target)
    return read_lexicon_file(target)


def generate_lexicon(generator: TextGenerator, *, name: str, features: Sequence[str] | None = None,
                     max_new_tokens: int = 2048, directory: str | Path | None = None,
                     source: Mapping[str, Any] | None = None) -> Lexicon:
    """Run Appendix A's instruction through ``generator``, validate the answer, save a new version.

    ``source`` (default: ``generator.describe()``) is recorded in the file with the prompt's hash.

    Raises:
        LexiconValidationError: The answer breaks the rules (nothing is saved).
    """
    wanted = tuple(features or lasca_feature_names())
    prompt = lexicon_prompt(wanted)
    answer = generator.generate([prompt], max_new_tokens=max_new_tokens)[0]
    labels = parse_lexicon_answer(answer, wanted)
    described = generator.describe() if source is None else source
    provenance = {**dict(described), "prompt_sha256": stable_hash(prompt), "generated": utc_now()}
    return save_lexicon(name, labels, source=provenance,
                        description=f"generated with the LaScA Appendix A instruction for {len(wanted)} "
                                    "features",
                        directory=directory)
