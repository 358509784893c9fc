"""``affectcache demo``: the whole demo chain (corpus, every modality, LaScA, training) — what
``make demo`` runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from affectcache.cli._app import EXIT_ITEM_FAILURES, WorkersOpt, app, cli_errors, echo, is_quiet
from affectcache.cli.status import format_status


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo corpus and store.")] = Path(
        "demo_out"),
    workers: WorkersOpt = None,
) -> None:
    """Generate the synthetic demo corpus (once), build every modality, run LaScA and train on it.

    Example:

    \b
    affectcache demo --out demo_out
    """
    from affectcache.store.pipelines.demo import lasca_step, run_demo_chain
    from affectcache.store.status import store_status
    from affectcache.trainers.demo_steps import demo_training_steps

    chain = run_demo_chain(out, [lasca_step(3.0), *demo_training_steps()], workers=workers,
                           progress=sys.stderr.isatty() and not is_quiet())
    result = chain.result
    echo(format_status(store_status(result.store, result.manifest), result.store))
    for name, summary in chain.steps:
        echo(f"{name}: {summary}")
    echo("next:\n" + "\n".join(f"  {command}" for command in chain.next_commands))
    fragment = result.store.catalog("mfcc")[result.manifest.ids()[0]].fragment
    echo("open it: python -c \"import xarray as xr; print(xr.open_zarr('"
         f"{result.store.url}', group='mfcc/fragments/{fragment}', consolidated=False))\"")
    if any(not r.ok for r in result.reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)
