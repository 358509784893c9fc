"""Planted multitask corpora for MCDM's demo and tests: three single-task corpora and a MELD-like one.

Each corpus is its own store and manifest (as the corpus adapters write them) with two input modalities
of segment rows, ``syn-face`` (8 values) and ``syn-audio`` (6 values), 3–6 rows per clip, whose clip means
carry the planted label plus noise (the clip's mean‖std vector is what MCDM sees):

* ``mosei`` — a categorical emotion (one of the 7 classes, one-hot label vector): ``syn-face`` row mean
  ``+ signal · e_c`` on its first 7 values;
* ``fiv2`` — five trait scores in [0, 1]: ``syn-face`` values 0–4 and ``syn-audio`` values 0–4 carry
  ``signal · (y − 0.5)``;
* ``bah`` — a binary A/H label: ``syn-audio`` value 5 and ``syn-face`` value 7 carry ``± signal / 2``;
* ``meld`` — MELD emotion names planted like ``mosei`` (test split only), for the zero-shot check.

Splits: 60 % train, 20 % val, 20 % test. :func:`write_corpus` writes the features straight into the
stores with a provenance record (fast: tests); :func:`write_media_corpus` goes through the demo's media
machinery instead: planted clips encoded with :func:`~affectcache.extractors.testing.synthetic.write_clip`,
features built by the store runner (``clip-scene`` with the demo's tiny CLIP, ``mfcc``). Everything is
seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray, MediaItem
from affectcache.store.manifest import write_manifest
from affectcache.store.zarr_store import FeatureStore
from affectcache.trainers.mcdm.labels import MELD_CLASSES, MOSEI_TO_MELD
from affectcache.trainers.mcdm.model import EMOTION_CLASSES, PERSONALITY_TRAITS

FACE, AUDIO = "syn-face", "syn-audio"
"""Store modalities of the planted corpora."""
FACE_DIM, AUDIO_DIM = 8, 6
CORPORA: tuple[str, ...] = ("mosei", "fiv2", "bah")
"""The three single-task corpora (MELD is evaluation only)."""


@dataclass(frozen=True, kw_only=True)
class PlantedCorpus:
    """One written corpus."""

    name: str
    """Corpus name (the manifest's ``corpus`` column)."""
    store: Path
    """Its store."""
    manifest: Path
    """Its manifest."""


def _provenance(name: str, dim: int, seed: int) -> dict[str, Any]:
    config = {"dim": dim, "seed": seed, "planted": True}
    return {"extractor": name, "version": "1", "modality_kind": "segment", "config": config,
            "config_fingerprint": stable_hash(config), "upstream": {},
            "model": {"id": None, "revision": None, "sha256": None}, "libraries": library_versions(),
            "created": utc_now()}


def _split(i: int, n: int) -> str:
    share = i / n
    return "train" if share < 0.6 else "val" if share < 0.8 else "test"


def write_corpus(name: str, root: Path, *, n: int = 150, seed: int = 0, signal: float = 1.5,
                 noise: float = 1.0) -> PlantedCorpus:
    """Write one planted corpus (``mosei``, ``fiv2``, ``bah`` or ``meld``) under ``root``."""
    if name not in (*CORPORA, "meld"):
        raise ValueError(f"no planted corpus {name!r}; choose one of {[*CORPORA, 'meld']}")
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    store_path, manifest_path = root / f"{name}.zarr", root / f"{name}.jsonl"
    fs = FeatureStore(store_path)
    fs.init_modality(FACE, _provenance(FACE, FACE_DIM, seed), overwrite=True)
    fs.init_modality(AUDIO, _provenance(AUDIO, AUDIO_DIM, seed), overwrite=True)
    items = []
    for i in range(n):
        vid = f"{name}{i:04d}"
        face_shift = np.zeros(FACE_DIM)
        audio_shift = np.zeros(AUDIO_DIM)
        labels: dict[str, Any] = {}
        if name in ("mosei", "meld"):
            c = int(rng.integers(0, len(EMOTION_CLASSES)))
            face_shift[c] += signal
            if name == "mosei":
                labels.update({cls: float(k == c) for k, cls in enumerate(EMOTION_CLASSES)})
            else:
                labels["emotion"] = MOSEI_TO_MELD[EMOTION_CLASSES[c]]
        elif name == "fiv2":
            traits = rng.random(len(PERSONALITY_TRAITS))
            face_shift[:5] += signal * 2 * (traits - 0.5)
            audio_shift[:5] += signal * 2 * (traits - 0.5)
            labels.update({t: round(float(v), 4) for t, v in zip(PERSONALITY_TRAITS, traits, strict=True)})
        else:
            ah = int(rng.integers(0, 2))
            face_shift[7] += signal * (ah - 0.5)
            audio_shift[5] += signal * (ah - 0.5)
            labels["ah"] = ah
        rows = int(rng.integers(3, 7))
        start = np.arange(rows, dtype=np.float64)
        for modality, shift, dim in ((FACE, face_shift, FACE_DIM), (AUDIO, audio_shift, AUDIO_DIM)):
            values = (shift + noise * rng.normal(size=(rows, dim))).astype(np.float32)
            fs.write(modality, FeatureArray(video_id=vid, kind="segment", values=values, start_s=start,
                                            end_s=start + 1.0))
        split = "test" if name == "meld" else _split(i, n)
        items.append(MediaItem(video_id=vid, path=str(root / f"{vid}.mp4"), start_s=0.0, end_s=float(rows),
                               split=split, corpus=name, labels=labels))
    write_manifest(items, manifest_path)
    return PlantedCorpus(name=name, store=store_path, manifest=manifest_path)


def write_corpora(root: Path, *, n: int = 150, seed: int = 0, signal: float = 1.5, media: bool = False,
                  ) -> dict[str, PlantedCorpus]:
    """The three single-task corpora and MELD, each in its own store under ``root`` (``media``: as
    encoded clips with extracted features, :func:`write_media_corpus`; else features written directly)."""
    root.mkdir(parents=True, exist_ok=True)
    if media:
        return {name: write_media_corpus(name, root, n=n, seed=seed) for name in (*CORPORA, "meld")}
    return {name: write_corpus(name, root, n=n, seed=seed, signal=signal) for name in (*CORPORA, "meld")}


MELD_CHANCE_CLASSES = len(MELD_CLASSES)
"""Classes of MELD (a uniform guess has macro-F1 about 1/7)."""


# ---- through the demo's media machinery: encoded clips, then extractors ------------------------------
MEDIA_INPUTS: dict[str, str] = {"face": "clip-scene", "audio": "mfcc"}
"""Model input → store modality built from the planted clips (the demo's tiny CLIP, and MFCCs)."""
PALETTE = np.array([[128, 128, 128], [220, 40, 40], [120, 160, 40], [90, 40, 150], [250, 210, 60],
                    [40, 80, 200], [240, 120, 220]], dtype=np.float64)
"""Background colour of each emotion class (Neutral grey, Anger red, ...)."""


def _media_plan(name: str, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray, float, float]:
    """Labels, background colour, tone frequency (Hz) and tone amplitude of one planted clip."""
    labels: dict[str, Any] = {}
    colour, tone, amplitude = np.full(3, 128.0), 440.0, 0.3
    if name in ("mosei", "meld"):
        c = int(rng.integers(0, len(EMOTION_CLASSES)))
        colour = PALETTE[c]
        if name == "mosei":
            labels.update({cls: float(k == c) for k, cls in enumerate(EMOTION_CLASSES)})
        else:
            labels["emotion"] = MOSEI_TO_MELD[EMOTION_CLASSES[c]]
    elif name == "fiv2":
        traits = rng.random(len(PERSONALITY_TRAITS))
        colour = 40 + 180 * traits[:3]
        tone, amplitude = 200.0 + 600.0 * traits[3], 0.1 + 0.6 * traits[4]
        labels.update({t: round(float(v), 4) for t, v in zip(PERSONALITY_TRAITS, traits, strict=True)})
    else:
        ah = int(rng.integers(0, 2))
        colour = np.array([60.0, 60.0, 60.0]) if ah else np.array([200.0, 200.0, 200.0])
        tone = 900.0 if ah else 300.0
        labels["ah"] = ah
    return labels, colour, tone, amplitude


def write_media_corpus(name: str, root: Path, *, n: int = 150, seed: int = 0, duration_s: float = 2.0,
                       workers: int | None = 0) -> PlantedCorpus:
    """A planted corpus as encoded clips (the demo's :func:`write_clip`) with features built by the store
    runner (``clip-scene`` with the demo's tiny CLIP, ``mfcc``): the label sets the background colour
    (emotion: a colour per class; traits: RGB and the tone's pitch and loudness; A/H: dark and high-pitched
    or light and low), every frame gets pixel noise and the audio noise, so the extractors have something
    genuine but imperfect to find."""
    from affectcache.extractors.core.registry import get_extractor_cls
    from affectcache.extractors.testing.synthetic import write_clip
    from affectcache.store.manifest import load_manifest
    from affectcache.store.runner import build_many

    if name not in (*CORPORA, "meld"):
        raise ValueError(f"no planted corpus {name!r}; choose one of {[*CORPORA, 'meld']}")
    rng = np.random.default_rng([seed, sum(map(ord, name)), 1])
    media = root / "media" / name
    media.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        vid = f"{name}{i:04d}"
        labels, colour, tone, amplitude = _media_plan(name, rng)
        clip_seed = int(rng.integers(0, 2**31))

        def frame(index: int, t: float, colour: np.ndarray = colour, clip_seed: int = clip_seed,
                  ) -> np.ndarray:
            noise = np.random.default_rng([clip_seed, index]).normal(0.0, 35.0, (64, 64, 3))
            return np.clip(colour + noise, 0, 255).astype(np.uint8)

        def audio(t: np.ndarray, tone: float = tone, amplitude: float = amplitude,
                  clip_seed: int = clip_seed) -> np.ndarray:
            noise = np.random.default_rng([clip_seed, int(t[0] * 1000)]).normal(0.0, 0.05, t.shape)
            return np.clip(amplitude * np.sin(2 * np.pi * tone * t) + noise, -1, 1)

        path = media / f"{vid}.mp4"
        if not path.exists():
            write_clip(path, duration_s=duration_s, fps=5.0, size=(64, 64), frame_fn=frame, audio_fn=audio,
                       sample_rate=16000)
        split = "test" if name == "meld" else _split(i, n)
        items.append(MediaItem(video_id=vid, path=str(path), split=split, corpus=name, labels=labels))
    manifest_path = root / f"{name}.jsonl"
    write_manifest(items, manifest_path)
    store_path = root / f"{name}.zarr"
    work = root / "work"
    configs = {m: get_extractor_cls(m).demo_config(work) for m in MEDIA_INPUTS.values()}
    build_many(list(MEDIA_INPUTS.values()), load_manifest(manifest_path), FeatureStore(store_path),
               configs=configs, workers=workers)
    return PlantedCorpus(name=name, store=store_path, manifest=manifest_path)
