"""``affectcache assets list|fetch|verify``: the local cache of pinned model files (MediaPipe bundles)."""

from __future__ import annotations

from typing import Annotated

import typer

from affectcache.cli._app import EXIT_ITEM_FAILURES, app, cli_errors
from affectcache.extractors.common.assets import (
    DEFAULT_TIMEOUT_S,
    asset_file,
    assets_home,
    available_assets,
    fetch_asset,
    get_asset,
    is_verified,
)

assets_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Pinned model files (MediaPipe task bundles, ...).")
app.add_typer(assets_app, name="assets")

NamesArg = Annotated[list[str] | None, typer.Argument(help="Asset names (default: all registered).")]


@assets_app.command("list")
@cli_errors
def list_assets() -> None:
    """Registered assets, whether each is cached and verified, and where it comes from."""
    typer.echo(f"cache: {assets_home() / 'assets'}")
    for name in available_assets():
        asset = get_asset(name)
        state = "ok" if is_verified(name) else "missing" if not asset_file(name).exists() else "BAD HASH"
        typer.echo(f"{name:<24} {state:<9} {asset.size:>10} B  sha256 {asset.sha256[:16]}  "
                   f"{asset.description}")
        for source in asset.sources:
            typer.echo(f"{'':<24}   from {source.describe()}")


@assets_app.command("fetch")
@cli_errors
def fetch(
    names: NamesArg = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if a verified copy is cached.")] = False,
    timeout_s: Annotated[float, typer.Option(
        help="Network timeout per source, seconds.")] = DEFAULT_TIMEOUT_S,
) -> None:
    """Fetch assets into the cache (sources tried in order, sha256 verified before use)."""
    for name in names or available_assets():
        typer.echo(f"{name}: {fetch_asset(name, force=force, timeout_s=timeout_s)}")


@assets_app.command("verify")
@cli_errors
def verify(names: NamesArg = None) -> None:
    """Check cached assets against their pinned sha256; exit 1 if any is missing or differs."""
    bad = 0
    for name in names or available_assets():
        ok = is_verified(name)
        bad += not ok
        typer.echo(f"{name}: {'ok' if ok else 'missing or bad hash'} ({asset_file(name)})")
    if bad:
        typer.echo(f"{bad} asset(s) not verified; run `affectcache assets fetch`", err=True)
        raise typer.Exit(EXIT_ITEM_FAILURES)
