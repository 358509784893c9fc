"""``affectcache fuse late``: late fusion of prediction modalities (thin over trainers.fusion.late_store)."""

from __future__ import annotations

from typing import Annotated

import typer

from affectcache.cli._app import ManifestOpt, StoreOpt, app, cli_errors

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

