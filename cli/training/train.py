"""``affectcache train preference`` and ``affectcache evaluate``: the LaScA preference learner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from affectcache.cli._app import ManifestOpt, StoreOpt, app, cli_errors
from affectcache.cli.training.results import echo_results, preference_rows, results_table, va_rows
from affectcache.store.errors import StoreError

train_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Train models on stored features.")
app.add_typer(train_app, name="train")

RunOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (results, models, run.json).")]


@train_app.command("preference")
@cli_errors
def preference(
    store: StoreOpt, manifest: ManifestOpt, out: RunOpt = Path("runs/preference"),
    label: Annotated[list[str] | None, typer.Option(help="Label track (repeatable).")] = None,
    threshold: Annotated[list[float] | None, typer.Option(
        help="Relative-change margin (repeatable).")] = None,
    variant: Annotated[list[str] | None, typer.Option(
        help="features, text or fused (repeatable; default all three).")] = None,
    window_s: Annotated[float | None, typer.Option(
        "--window-s", help="Refuse unless the store's lasca-windows use this window.")] = None,
    protocol: Annotated[str, typer.Option(help="folds (subject folds) or seeds (train vs test).")] = "folds",
    folds: Annotated[int, typer.Option(help="Subject folds K.")] = 15,
    seeds: Annotated[int, typer.Option(help="Seeds N of the seeds protocol.")] = 15,
    seed: Annotated[int, typer.Option(help="Base random seed.")] = 0,
    max_iter: Annotated[int, typer.Option(help="Adam epochs at most (paper: 25).")] = 25,
    batch_size: Annotated[int | None, typer.Option(help="Pairs per Adam step (default min(200, n)).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run trained on other inputs.")] = False,
) -> None:
    """Pairwise preference MLP on window-feature differences; accuracy per fold, Wilcoxon between variants.

    Example:

    \b
    affectcache train preference -s features.zarr -m manifest.jsonl \\
        --label arousal --threshold 0.1
    """
    from affectcache.extractors.core.errors import ConfigError
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.preference import FEATURES_MODALITY, VARIANTS, PreferenceConfig
    from affectcache.trainers.runs import train_preference

    fs = FeatureStore(store, read_only=True)
    stored_window = fs.provenance(FEATURES_MODALITY)["config"]["window_s"]
    if window_s is not None and stored_window != window_s:
        raise ConfigError(f"the store's lasca-windows use {stored_window} s windows, not {window_s} s; "
                          "build the chain with that window (one window length per store)")
    if protocol not in ("folds", "seeds"):
        raise ConfigError(f"--protocol must be folds or seeds, got {protocol!r}")
    config = PreferenceConfig(variants=tuple(variant or VARIANTS), protocol=protocol,  # type: ignore[arg-type]
                              n_folds=folds, n_seeds=seeds, seed=seed, max_iter=max_iter,
                              batch_size=batch_size)
    run = train_preference(fs, load_manifest(manifest), out, config=config, labels=label or ["arousal"],
                           thresholds=threshold or [0.2], overwrite=overwrite)
    typer.echo(results_table(preference_rows(run.rows)))
    for exp in run.record["experiments"]:
        for comp in exp["comparisons"]:
            cfg = exp["config"]
            typer.echo(f"{cfg['label']} tau={cfg['threshold']:g}: {comp['a']} vs {comp['b']}: "
                       f"diff {comp['mean_difference']:+.3f}, Wilcoxon p={comp['p_value']:.3g}"
                       f"{' (significant)' if comp['significant'] else ''}")
    typer.echo(f"run: {run.run_dir}")


@app.command("evaluate")
@cli_errors
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Run folder (from `affectcache train`).")],
    store: StoreOpt, manifest: ManifestOpt,
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
) -> None:
    """Scores of a run (preference or VA) on a split; refused if the store's inputs changed since training.

    Example:

    \b
    affectcache evaluate --run runs/ras-face -s features.zarr -m manifest.jsonl \\
        --split test
    """
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.runs import RUN_FORMAT, evaluate_run
    from affectcache.trainers.va import evaluate_va

    fs, items = FeatureStore(store, read_only=True), load_manifest(manifest)
    try:
        run_format = json.loads((run / "run.json").read_text(encoding="utf-8")).get("format")
    except FileNotFoundError:
        raise StoreError(f"{run} is not a run folder (no run.json); train one with `affectcache train`"
                         ) from None
    if run_format == RUN_FORMAT:
        echo_results(preference_rows(evaluate_run(run, fs, items, split=split), split=split), run)
    else:
        echo_results(va_rows({split: evaluate_va(run, fs, items, split=split)}), run)
