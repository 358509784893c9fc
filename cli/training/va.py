"""``affectcache train ras-face|ras-behaviour|ras-audio|dcmmoe|dcmmoe-released|raav``,
``train show-config``, ``predict``, ``submit abaw``, ``fuse late``, and SCD-MMPSR's multitask
``train mcdm|mcdm-1``, ``ablate mcdm`` and ``demo mcdm``.

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
from affectcache.cli.demo import EXTRA_DEMOS
from affectcache.cli.training.results import echo_results, va_rows
from affectcache.cli.training.train import train_app

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


# ---- SCD-MMPSR multitask (MCDM): train mcdm|mcdm-1, ablate mcdm, demo mcdm ----------------------------
# Corpora come as (store, manifest) pairs: -s S1 -m M1 -s S2 -m M2 ... (repeated options are paired in order;
# Typer has no repeatable two-value option).
MCDM_MODELS: tuple[str, ...] = ("mcdm", "mcdm-1")
"""The multitask models with a train command here."""

StoresOpt = Annotated[list[str], typer.Option(
    "--store", "-s", help="Feature store of a corpus (repeatable; paired in order with --manifest).")]
ManifestsOpt = Annotated[list[Path], typer.Option(
    "--manifest", "-m", help="Manifest of a corpus (repeatable; paired in order with --store).")]
MeldOpt = Annotated[tuple[str, Path] | None, typer.Option(
    "--meld", help="MELD STORE MANIFEST: score its test split zero-shot through the emotion head.")]


def _pairs(stores: list[str], manifests: list[Path]):  # type: ignore[no-untyped-def]
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore

    if len(stores) != len(manifests):
        raise typer.BadParameter(f"got {len(stores)} --store and {len(manifests)} --manifest; give one "
                                 "manifest per store, in the same order")
    return [(FeatureStore(s, read_only=True), load_manifest(m))
            for s, m in zip(stores, manifests, strict=True)]


def _make_mcdm_train_command(name: str) -> None:
    @train_app.command(name)
    @cli_errors
    def command(
        store: StoresOpt, manifest: ManifestsOpt, meld: MeldOpt = None,
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="Run folder (default runs/NAME).")] = None,
        preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
        overwrite: OverwriteOpt = False,
    ) -> None:
        from affectcache.trainers.mcdm.run import train_mcdm

        corpora = _pairs(store, manifest)
        meld_pair = _pairs([meld[0]], [meld[1]])[0] if meld is not None else None
        run = train_mcdm(name, corpora, out or Path("runs") / name,
                         config=_config(name, preset, config, set_), meld=meld_pair, overwrite=overwrite,
                         progress=sys.stderr.isatty())
        _echo_results(run.record["results"])
        typer.echo(f"table: {run.run_dir / 'results.md'}")
        typer.echo(f"run: {run.run_dir}")

    command.__doc__ = (f"Train {name} multitask (with pseudo-labels and GradNorm) on the concatenated "
                       "corpora's train splits; select on val mean_all; score test with bootstrap CIs. "
                       f"Running it again resumes.\n\nExample:\n\n\b\naffectcache train {name} "
                       "-s a.zarr -m a.jsonl -s b.zarr -m b.jsonl")


def _echo_results(results: dict[str, dict[str, object]]) -> None:
    for split, figures in results.items():
        parts = []
        for key, value in figures.items():
            if isinstance(value, dict) and "value" in value:
                parts.append(f"{key} {value['value']:.3f}")
            elif isinstance(value, float):
                parts.append(f"{key} {value:.3f}")
        typer.echo(f"{split}: " + ", ".join(parts))


for _name in MCDM_MODELS:
    _make_mcdm_train_command(_name)

ablate_app = typer.Typer(no_args_is_help=True, help="Run a model's ablation grid and write the whole table.")
app.add_typer(ablate_app, name="ablate")


@ablate_app.command("mcdm")
@cli_errors
def ablate_mcdm(
    store: StoresOpt, manifest: ManifestsOpt, meld: MeldOpt = None,
    grid: Annotated[str, typer.Option(
        help="table1 (the paper's rows over the config's inputs and tasks) or a YAML file mapping row "
             "label -> config overrides.")] = "table1",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the rows' runs and the table.")] = Path(
        "runs/mcdm-ablation"),
    preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Train every row of an ablation grid (each a resumable run under --out) and write results.md/.csv in
    the shape of the paper's Table 1, with the average rank of each row.

    Example:

    \b
    affectcache ablate mcdm -s a.zarr -m a.jsonl -s b.zarr -m b.jsonl
    """
    from affectcache.trainers.mcdm.ablate import read_grid, run_ablation

    rows_grid = None
    if grid != "table1":
        import yaml

        rows_grid = read_grid(yaml.safe_load(Path(grid).read_text(encoding="utf-8")))
    corpora = _pairs(store, manifest)
    meld_pair = _pairs([meld[0]], [meld[1]])[0] if meld is not None else None
    run_ablation("mcdm", corpora, out, _config("mcdm", preset, config, set_), grid=rows_grid, meld=meld_pair,
                 overwrite=overwrite)
    typer.echo((out / "results.md").read_text(encoding="utf-8"))


def demo_mcdm(out: Path) -> None:
    """``affectcache demo mcdm``: planted corpora (emotion, trait scores, A/H, MELD), MCDM multitask with
    pseudo-labels vs single-task supervised baselines, each held-out figure beside its chance level."""
    from affectcache.trainers.mcdm.demo import run_demo

    report = run_demo(out)
    typer.echo(report.table)
    typer.echo(f"runs: {out}")


EXTRA_DEMOS["mcdm"] = demo_mcdm

# ---- late fusion ---------------------------------------------------------------------------------------
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

