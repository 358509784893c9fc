"""``affectcache store compact|upgrade``: maintenance of a feature store's fragments and format."""

from __future__ import annotations

from typing import Annotated

import typer

from affectcache.cli._app import StoreOpt, app, cli_errors

store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Maintain a store: compact fragments, upgrade old stores.")
app.add_typer(store_app, name="store")


@store_app.command("compact")
@cli_errors
def compact(
    store: StoreOpt,
    modalities: Annotated[list[str] | None, typer.Argument(
        help="Modalities (labels/<track> for label tracks); default: all of them.")] = None,
    target_mb: Annotated[float, typer.Option(help="Size of the fragments written (MB of values).")] = 512.0,
    vacuum: Annotated[bool, typer.Option(
        "--vacuum", help="Only delete superseded fragments older than --retain-s (no rewrite).")] = False,
    retain_s: Annotated[float, typer.Option(
        help="Keep superseded fragments this many seconds after they were found unreferenced, for "
             "readers of the older catalog; 0 deletes them at once.")] = 3600.0,
) -> None:
    """Rewrite small or partly superseded fragments into few large ones; delete expired garbage."""
    from affectcache.store.format.compaction import CompactionPolicy
    from affectcache.store.format.compaction import compact as compact_modality
    from affectcache.store.format.compaction import vacuum as vacuum_modality
    from affectcache.store.lock import ModalityLock
    from affectcache.store.zarr_store import FeatureStore, label_modality

    fs = FeatureStore(store)
    names = modalities or fs.modalities() + [label_modality(t) for t in fs.label_tracks()]
    policy = CompactionPolicy(target_fragment_mb=target_mb, retain_s=retain_s)
    for name in names:
        with ModalityLock(fs, name):
            if vacuum:
                deleted, retained = vacuum_modality(fs, name, policy)
                typer.echo(f"{name}: {deleted} fragments deleted, {retained} retained for readers")
            else:
                typer.echo(compact_modality(fs, name, policy).summary())


@store_app.command("upgrade")
@cli_errors
def upgrade(store: StoreOpt) -> None:
    """Convert a store written by an older affectcache (one group per video) in place; resumable."""
    from affectcache.store.format.upgrade import upgrade_store
    from affectcache.store.zarr_store import FeatureStore

    reports = upgrade_store(FeatureStore(store))
    for report in reports:
        typer.echo(report.summary())
    if not reports:
        typer.echo("nothing to upgrade: the store already has the current layout")
