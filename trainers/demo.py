"""The VA part of the offline demo: ``ras-face`` and ``ras-audio`` trained on the demo store.

Each head is one demo step (:func:`va_demo_steps`, added by
:func:`affectcache.trainers.demo_steps.demo_training_steps`): it trains the head with its ``demo`` preset
(small model, few epochs) on the planted corpus — ``ras-face`` on the face crops' CLIP embeddings
(``clip-face``; the whole-frame ``clip-scene`` when no face modality was built) and ``ras-audio`` on
``wavlm-frames`` — writes its predictions into the store (``pred-ras-face``, ``pred-ras-audio``) and
reports the held-out (test split) CCCs. Then RAAV fuses their predictions (``pred-raav``, held-out CCCs
and contribution shares reported), and a mock ABAW submission of ``pred-raav`` is written from the
demo's own template of the test videos and checked (``<out>/submission/``). Runs go to
``<out>/runs/``; a rerun reuses the finished runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.store.pipelines.demo import DemoStep
from affectcache.trainers.models import get_model_spec
from affectcache.trainers.models.raav import DEMO_AUDIO_FRAMES
from affectcache.trainers.predict import RAS_SMOOTHING, predict_to_store
from affectcache.trainers.submission import check_submission, write_abaw_submission, write_abaw_template
from affectcache.trainers.va import train_va

if TYPE_CHECKING:
    from collections.abc import Mapping

    from affectcache.store.manifest import Manifest
    from affectcache.store.pipelines.demo import DemoResult
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

FACE_INPUTS: tuple[str, ...] = ("clip-face", "clip-scene")
"""Face-head inputs, in order of preference (the first one the store has is used)."""
DEMO_HEADS: tuple[str, ...] = ("ras-face", "ras-audio")


@dataclass(frozen=True, kw_only=True)
class DemoHead:
    """One trained demo head."""

    model: str
    """Registry name."""
    input_modality: str
    """What it was trained on."""
    run_dir: Path
    """Its run folder."""
    held_out: dict[str, Any]
    """Scores on the held-out split (CCC per label with bootstrap CI, va_score, and ``split``)."""
    prediction_modality: str
    """The modality its predictions were written to."""
    contributions: dict[str, dict[str, float]] | None = None
    """Fusion runs: ablation share per label and stream (validation split); None for a head."""

    def summary(self) -> str:
        """One line: held-out CCC per label with its interval, where the predictions and run are."""
        cccs = ", ".join(f"{k[4:]} {v['value']:.3f} [{v['low']:.2f}, {v['high']:.2f}]"
                         for k, v in self.held_out.items() if k.startswith("ccc_"))
        shares = "".join(
            f"; {label} ablation share " + ", ".join(f"{s} {v:.2f}" for s, v in by_stream.items())
            for label, by_stream in (self.contributions or {}).items())
        return (f"on {self.input_modality}: held-out ({self.held_out['split']}) CCC {cccs}{shares}; "
                f"predictions -> {self.prediction_modality}; run {self.run_dir}")


def face_input(fs: FeatureStore) -> str:
    """The first of :data:`FACE_INPUTS` the store has."""
    for modality in FACE_INPUTS:
        if modality in fs.modalities():
            return modality
    raise LookupError(f"the demo store has none of {list(FACE_INPUTS)}; build the demo first")


def _input_of(name: str, fs: FeatureStore) -> str:
    return face_input(fs) if name == "ras-face" else "wavlm-frames"


def train_demo_head(name: str, fs: FeatureStore, manifest: Manifest, out_dir: Path, *,
                    progress: bool = False, overrides: Mapping[str, Any] | None = None) -> DemoHead:
    """Train, predict and score one demo head; ``overrides`` changes fields of its demo preset."""
    modality = _input_of(name, fs)
    presets = dict(get_model_spec(name).presets or {})
    config = presets["demo"]().replace(input_modality=modality, **dict(overrides or {}))
    run = train_va(name, fs, manifest, out_dir / "runs" / name, config=config, progress=progress)
    results = run.record["results"]
    split = config.test_split if config.test_split in results else config.val_split
    report = predict_to_store(run.run_dir, fs, manifest, modality=f"pred-{name}", overwrite=True)
    return DemoHead(model=name, input_modality=modality, run_dir=run.run_dir,
                    held_out={"split": split, **results[split]}, prediction_modality=report.modality)


DEMO_FUSION = "raav"
"""The fusion model trained on the demo heads' predictions."""
DEMO_FUSION_INPUTS: dict[str, str] = {"face": "pred-ras-face", DEMO_AUDIO_FRAMES: "pred-ras-audio",
                                      "audio": "pred-ras-audio"}
"""Store modality of each stream of RAAV's demo preset (the audio head feeds a frame stream and the
window tokens; see :func:`affectcache.trainers.models.raav.raav_demo_config`)."""


def train_demo_fusion(fs: FeatureStore, manifest: Manifest, out_dir: Path, *, progress: bool = False,
                      overrides: Mapping[str, Any] | None = None) -> DemoHead:
    """RAAV on the demo heads' prediction modalities (face and audio frame streams, audio tokens); its
    predictions (RAS smoothing) go to ``pred-raav``, its contribution summary into the run."""
    presets = dict(get_model_spec(DEMO_FUSION).presets or {})
    config = presets["demo"]()
    config = config.replace(input_modalities=tuple(DEMO_FUSION_INPUTS[s] for s in config.streams()),
                            **dict(overrides or {}))
    run = train_va(DEMO_FUSION, fs, manifest, out_dir / "runs" / DEMO_FUSION, config=config,
                   progress=progress)
    results = run.record["results"]
    split = config.test_split if config.test_split in results else config.val_split
    report = predict_to_store(run.run_dir, fs, manifest, modality=f"pred-{DEMO_FUSION}", overwrite=True,
                              smoothing=RAS_SMOOTHING)
    shares = (run.record.get("contributions") or {}).get("ablation_share") or {}
    return DemoHead(model=DEMO_FUSION, input_modality=" + ".join(dict.fromkeys(config.input_names())),
                    run_dir=run.run_dir, held_out={"split": split, **results[split]},
                    prediction_modality=report.modality, contributions=shares)


def write_demo_submission(fs: FeatureStore, manifest: Manifest, out_dir: Path, *,
                          modality: str = f"pred-{DEMO_FUSION}", split: str = "test") -> str:
    """A mock ABAW submission: the demo's own template (every labelled frame of the ``split`` videos,
    ``<video>/<frame:05d>.jpg``, 1-based) and the submission from ``modality``, checked against it
    (same rows in the same order, values in [-1, 1]); returns one line naming both files."""
    videos = [item.video_id for item in manifest.items if item.split == split]
    if not videos:
        raise ValueError(f"the demo manifest has no {split!r} videos to write a template for")
    folder = out_dir / "submission"
    folder.mkdir(parents=True, exist_ok=True)
    template = write_abaw_template(fs, "labels/valence", videos, folder / "abaw_template.txt")
    report = write_abaw_submission(fs, modality, template, folder / f"{modality}.txt")
    check = check_submission(report.path, template)
    return (f"{report.path} ({check.rows} rows, {check.videos} {split} videos, in the order of {template}; "
            f"values in [{check.value_range[0]:.2f}, {check.value_range[1]:.2f}], {report.clamped} clamped)")


def va_demo_steps() -> list[DemoStep]:
    """One demo step per VA head, the fusion of their predictions, then a mock ABAW submission of it."""

    def step(name: str) -> DemoStep:
        def run(result: DemoResult) -> str:
            return train_demo_head(name, result.store, result.manifest, result.out_dir).summary()

        return DemoStep(name=f"train {name}", run=run,
                        next_command=f"affectcache submit abaw pred-{name} -s {{out}}/features.zarr "
                                     "--template {out}/submission/abaw_template.txt "
                                     f"--out {{out}}/submission/pred-{name}.txt")

    def fusion(result: DemoResult) -> str:
        return train_demo_fusion(result.store, result.manifest, result.out_dir).summary()

    def submission(result: DemoResult) -> str:
        return write_demo_submission(result.store, result.manifest, result.out_dir)

    return [*(step(name) for name in DEMO_HEADS),
            DemoStep(name=f"train {DEMO_FUSION} (fusion)", run=fusion,
                     next_command=f"affectcache fuse late pred-{DEMO_FUSION} "
                                  + " ".join(f"pred-{n}" for n in DEMO_HEADS)
                                  + " -s {out}/features.zarr -m {out}/demo.jsonl --out pred-late"),
            DemoStep(name="mock ABAW submission", run=submission,
                     next_command=f"affectcache submit abaw pred-{DEMO_FUSION} -s {{out}}/features.zarr "
                                  "--template {out}/submission/abaw_template.txt --out submission.txt")]
