"""``affectcache search NAME --grid grid.yaml``: a hyperparameter search of a VA model on Dask.

A thin command over :func:`affectcache.trainers.search.run.run_search`.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 (Typer reads the annotations at run time)
from typing import Annotated

import typer

from affectcache.cli._app import ManifestOpt, SchedulerOpt, StoreOpt, WorkersOpt, app, cli_errors, echo


@app.command("search")
@cli_errors
def search(
    name: Annotated[str, typer.Argument(
        help="Registered VA model (ras-face, ras-audio, raav, dcmmoe, ...).")],
    grid: Annotated[Path, typer.Option("--grid", "-g", exists=True, dir_okay=False,
                                       help="YAML file: strategy, preset, base, params (n_trials, seed).")],
    store: StoreOpt, manifest: ManifestOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Search folder (trials/, results, best).")],
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
    torch_threads: Annotated[int | None, typer.Option(
        help="torch threads per trial (default 1 on Dask workers).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Run trials that failed in an earlier call again.")
                            ] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Delete the search folder first (another search, or trials on store inputs changed since).")
                         ] = False,
) -> None:
    """Train one run per trial (grid, greedy one-at-a-time, or tpe) as Dask tasks; results in
    OUT/search_results.csv and OUT/best_trial.json as trials finish. Running it again resumes.

    Example:

    \b
    affectcache search ras-face --grid grid.yaml -s features.zarr \\
        -m manifest.jsonl --out runs/search-face --workers 2
    """
    import contextlib

    from affectcache.extractors.core.errors import ConfigError
    from affectcache.store.executors import scheduler_client
    from affectcache.store.manifest import load_manifest
    from affectcache.trainers.search.run import run_search
    from affectcache.trainers.search.spec import read_spec

    if workers is not None and scheduler is not None:
        raise ConfigError("give either --workers or --scheduler, not both")
    spec = read_spec(grid)
    items = load_manifest(manifest)
    with scheduler_client(scheduler) if scheduler else contextlib.nullcontext() as client:
        report = run_search(name, spec, store, items, out, executor=client, workers=workers,
                            torch_threads=torch_threads, overwrite=overwrite, retry_failed=retry_failed,
                            on_trial=lambda line: echo(line))
    failed = sum(r.status == "failed" for r in report.records)
    echo(f"{len(report.records)} trial(s): {len(report.records) - failed} done, {failed} failed, "
         f"{report.trained} trained now; results: {out / 'search_results.csv'}")
    if report.best is not None:
        echo(f"best: {report.best.trial_id} val CCC mean {report.best.objective:.4f} {report.best.params} "
             f"({out / 'trials' / report.best.trial_id})")
