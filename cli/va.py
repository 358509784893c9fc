"""``affectcache train ras-face|ras-behaviour|ras-audio|dcmmoe|dcmmoe-released|raav``, ``train show-config``,
``predict``, ``submit abaw`` and ``fuse late``.

Thin commands over :mod:`affectcache.trainers.va`, :mod:`affectcache.trainers.predict` and
:mod:`affectcache.trainers.submission`; config choices and validation come from the model registry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from affectcache.cli._app import ConfigOpt, ManifestOpt, SetOpt, StoreOpt, app, cli_errors
from affectcache.cli.results import echo_results, va_rows
from affectcache.cli.train import train_app

VA_MODELS: tuple[str, ...] = ("ras-face", "ras-behaviour", "ras-audio", "dcmmoe", "dcmmoe-released", "raav")
"""The VA models with a train command here (each is looked up in the model registry)."""

PresetOpt = Annotated[str | None, typer.Option("--preset", help="Start from a named preset (e.g. demo).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing run / modality of that name.")]


def _config(name: str, preset: str | None, config_file: Path | None, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    from affectcache.extractors.core.errors import ConfigError
    from affectcache.trainers.config import load_config
    from affectcache.trainers.models import get_model_spec

    spec = get_model_spec(name)
    presets = dict(spec.presets or {})
    if preset is not None and preset not in presets:
        raise ConfigError(f"{name} has no preset {preset!r}; presets: {sorted(presets)}")
    base = presets[preset]() if preset is not None else spec.config_type()
    return load_config(base, config_file, overrides or ())


def _train(name: str, store: str, manifest: Path, out: Path | None, preset: str | None, config: Path | None,
           set_: list[str] | None, overwrite: bool) -> None:
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.va import train_va

    run = train_va(name, FeatureStore(store, read_only=True), load_manifest(manifest),
                   out or Path("runs") / name, config=_config(name, preset, config, set_),
                   overwrite=overwrite,
                   progress=sys.stderr.isatty())
    echo_results(va_rows(run.record["results"]), run.run_dir)


def _make_train_command(name: str) -> None:
    @train_app.command(name)
    @cli_errors
    def command(
        store: StoreOpt, manifest: ManifestOpt,
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="Run folder (default runs/NAME).")] = None,
        preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
        overwrite: OverwriteOpt = False,
    ) -> None:
        _train(name, store, manifest, out, preset, config, set_, overwrite)

    command.__doc__ = (f"Train {name} on the store's inputs and labels (train/val splits of the manifest); "
                       f"running it again resumes.\n\nExample:\n\n\b\naffectcache train {name} "
                       "-s features.zarr -m m.jsonl --preset demo")


for _name in VA_MODELS:
    _make_train_command(_name)


@train_app.command("show-config")
@cli_errors
def show_config(name: Annotated[str, typer.Argument(help="Registered model name.")], preset: PresetOpt = None,
                ) -> None:
    """Print a model's config (authors' defaults, or a preset) as YAML, every field documented.

    Example:

    \b
    affectcache train show-config ras-face --preset demo
    """
    from affectcache.trainers.models import describe_config

    typer.echo(describe_config(_config(name, preset, None, None)))


@app.command("predict")
@cli_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A finished VA run folder.")], store: StoreOpt,
    manifest: ManifestOpt,
    split: Annotated[list[str] | None, typer.Option(help="Only this split's videos (repeatable).")] = None,
    modality: Annotated[str | None, typer.Option(help="Modality to write (default pred-<run name>).")] = None,
    smooth: Annotated[bool, typer.Option(
        help="RAS smoothing: moving average 7 (valence), 13 (arousal).")] = False,
    clamp: Annotated[bool, typer.Option(help="Clamp predictions to [-1, 1].")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a run's per-frame predictions and embeddings into the store (identity: the run).

    Example:

    \b
    affectcache predict runs/ras-face -s features.zarr -m manifest.jsonl \\
        --split test
    """
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.predict import RAS_SMOOTHING, predict_to_store

    report = predict_to_store(run, FeatureStore(store), load_manifest(manifest), modality=modality,
                              splits=split, smoothing=RAS_SMOOTHING if smooth else None, clamp=clamp,
                              overwrite=overwrite)
    typer.echo(f"{report.modality}: {len(report.videos)} videos, {len(report.columns)} columns")


submit_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  help="Write challenge submission files.")
app.add_typer(submit_app, name="submit")


@submit_app.command("abaw")
@cli_errors
def submit_abaw(
    modality: Annotated[str, typer.Argument(help="Prediction modality (from `affectcache predict`).")],
    store: StoreOpt,
    template: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Organisers' test-set file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Submission file to write.")],
) -> None:
    """The ABAW VA submission: every template frame looked up, values clamped to [-1, 1].

    Example:

    \b
    affectcache submit abaw pred-ras-face -s features.zarr --template test.txt \\
        -o submission.txt
    """
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.submission import write_abaw_submission

    report = write_abaw_submission(FeatureStore(store, read_only=True), modality, template, out)
    typer.echo(json.dumps({"out": str(report.path), "rows": report.rows, "videos": report.videos,
                           "clamped": report.clamped}))


fuse_app = typer.Typer(no_args_is_help=True, help="Fuse prediction modalities.")
app.add_typer(fuse_app, name="fuse")


@fuse_app.command("late")
@cli_errors
def late(
    inputs: Annotated[list[str], typer.Argument(help="Prediction modalities to fuse (two or more).")],
    store: StoreOpt, manifest: ManifestOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Modality to write.")] = "pred-late",
    val_split: Annotated[str, typer.Option(help="Split the weights are chosen on.")] = "val",
    split: Annotated[list[str] | None, typer.Option(
        help="Only write this split's videos (repeatable).")] = None,
    search: Annotated[str, typer.Option(help="grid (step over the simplex) or dirichlet.")] = "grid",
    step: Annotated[float, typer.Option(help="Grid step.")] = 0.05,
    max_models: Annotated[int, typer.Option(help="Largest subset combined.")] = 3,
    samples: Annotated[int, typer.Option(help="Dirichlet draws per subset.")] = 8000,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing modality of that name.")] = False,
) -> None:
    """Choose per-dimension weights of up to MAX_MODELS inputs on the validation split by CCC and write the
    fused predictions as a new modality (its provenance lists the inputs and weights)."""
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.fusion.late_fusion import LateFusionConfig
    from affectcache.trainers.fusion.late_store import fuse_late_to_store

    config = LateFusionConfig.from_dict({"search": search, "step": step, "max_models": max_models,
                                         "n_samples": samples})
    report = fuse_late_to_store(FeatureStore(store), load_manifest(manifest), inputs, out, config=config,
                                val_split=val_split, splits=split, overwrite=overwrite)
    c = report.choice
    typer.echo(f"{report.modality}: {len(report.videos)} videos; {val_split} CCC valence "
               f"{c.ccc_valence:.3f}, arousal {c.ccc_arousal:.3f}")
    for label, weights in (("valence", c.weights_valence), ("arousal", c.weights_arousal)):
        typer.echo(f"  {label}: " + ", ".join(f"{m} {w:.2f}" for m, w in zip(c.models, weights, strict=True)))

