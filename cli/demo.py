"""``affectcache demo``: the synthetic demo corpus built into a store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from affectcache.cli._app import EXIT_ITEM_FAILURES, WorkersOpt, app, cli_errors
from affectcache.cli.status import format_status


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo corpus and store.")] = Path(
        "demo_out"),
    workers: WorkersOpt = None,
    train: Annotated[bool, typer.Option(help="Also train the ras-face and ras-audio demo heads.")] = True,
) -> None:
    """Generate the synthetic demo corpus (once), build every modality, print coverage, and train the VA
    demo heads (held-out CCC printed)."""
    from affectcache.store.pipelines.demo import run_demo
    from affectcache.store.status import store_status

    result = run_demo(out, workers=workers, progress=sys.stderr.isatty())
    typer.echo(format_status(store_status(result.store, result.manifest), result.store))
    typer.echo(f"\nmanifest: {result.manifest_path}\nstore:    {result.store.url}")
    typer.echo("open it: python -c \"import xarray as xr; print(xr.open_zarr('"
               f"{result.store.url}', group='mfcc/{result.manifest.ids()[0]}', consolidated=False))\"")
    if any(not r.ok for r in result.reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)
    if train:
        from affectcache.trainers.demo import train_demo_heads

        for head in train_demo_heads(result.store, result.manifest, result.out_dir,
                                     progress=sys.stderr.isatty()):
            scores = head.held_out
            cccs = ", ".join(f"{k[4:]} {v['value']:.3f} [{v['low']:.2f}, {v['high']:.2f}]"
                             for k, v in scores.items() if k.startswith("ccc_"))
            typer.echo(f"{head.model} on {head.input_modality}: held-out ({scores['split']}) CCC {cccs} "
                       f"-> {head.prediction_modality}, run {head.run_dir}")
