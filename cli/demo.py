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
) -> None:
    """Generate the synthetic demo corpus (once), build every modality, and print coverage."""
    from affectcache.store.pipelines.demo import run_demo
    from affectcache.store.status import store_status

    result = run_demo(out, workers=workers, progress=sys.stderr.isatty())
    typer.echo(format_status(store_status(result.store, result.manifest), result.store))
    typer.echo(f"\nmanifest: {result.manifest_path}\nstore:    {result.store.url}")
    typer.echo("open it: python -c \"import xarray as xr; print(xr.open_zarr('"
               f"{result.store.url}', group='mfcc/{result.manifest.ids()[0]}', consolidated=False))\"")
    if any(not r.ok for r in result.reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)
