"""``affectcache models list|fetch|verify``: the hub models extractor configs load, in the local cache.

Run ``models fetch NAME ...`` (with the same ``--set``/``--config`` as the build, or ``--store`` for the
configs a store was built with) where the hub is reachable; a GPU node sharing that cache (or given a
copy, ``HF_HUB_CACHE=...``) then builds with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from affectcache.cli._app import EXIT_ITEM_FAILURES, ConfigOpt, SetOpt, app, cli_errors
from affectcache.extractors import ConfigError, available_extractors
from affectcache.extractors.common.hub import (
    DEFAULT_TIMEOUT_S,
    HubModel,
    cached_path,
    fetch_model,
    hub_cache_dir,
    hub_models,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Hub models the extractors load: list, fetch, verify.")
app.add_typer(models_app, name="models")

NamesArg = Annotated[list[str] | None, typer.Argument(
    help="Extractor names (default: those of --store, else every extractor that loads a hub model).")]
StoreFromOpt = Annotated[str | None, typer.Option(
    "--store", "-s", help="Use the configs this store's modalities were built with.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Hub cache folder (default $HF_HUB_CACHE or ~/.cache/huggingface/hub).")]


def resolve_models(names: Sequence[str] | None, *, store: str | None = None, config: Path | None = None,
                   overrides: Sequence[str] | None = None) -> list[HubModel]:
    """The hub models of the named extractors' configs (defaults, the store's, then file and --set)."""
    from affectcache.cli.extract import _load_configs
    from affectcache.store.runner import make_extractor

    bases: dict[str, dict[str, Any]] = {}
    if store is not None:
        from affectcache.store.zarr_store import FeatureStore

        fs = FeatureStore(store, read_only=True)
        bases = {n: dict(fs.provenance(n)["config"]) for n in fs.modalities()}
        names = list(names or bases)
    explicit = bool(names)
    chosen = list(names or available_extractors())
    configs = _load_configs(chosen, config, overrides, bases=bases) if explicit else {n: {} for n in chosen}
    models: list[HubModel] = []
    for name in chosen:
        try:
            extractor = make_extractor(name, configs[name])
        except ConfigError:
            if explicit:
                raise
            continue  # an extractor whose defaults need more config (e.g. lasca-windows) loads no hub model
        models.extend(m for m in hub_models(extractor) if m not in models)
    return models


@models_app.command("list")
@cli_errors
def list_models(names: NamesArg = None, store: StoreFromOpt = None, config: ConfigOpt = None,
                set_: SetOpt = None, cache_dir: CacheOpt = None) -> None:
    """Each hub model (id@revision) the configs need, and whether it is in the local cache."""
    typer.echo(f"cache: {hub_cache_dir(cache_dir)}")
    for model in resolve_models(names, store=store, config=config, overrides=set_):
        path = cached_path(model, cache_dir=cache_dir)
        typer.echo(f"{model.extractor:<20} {model.describe():<62} {'cached' if path else 'missing'}")


@models_app.command("fetch")
@cli_errors
def fetch(names: NamesArg = None, store: StoreFromOpt = None, config: ConfigOpt = None,
          set_: SetOpt = None, cache_dir: CacheOpt = None,
          timeout_s: Annotated[float, typer.Option(help="Network timeout, seconds.")] = DEFAULT_TIMEOUT_S,
          ) -> None:
    """Download the models the named configs need into the cache (skips those already there).

    Example:

    \b
    affectcache models fetch clip-face wavlm --set wavlm.revision=COMMIT
    """
    if not names and store is None:
        raise ConfigError("name the extractors to fetch models for (e.g. `affectcache models fetch clip-face "
                          "wavlm`), or give --store to fetch what a store was built with")
    for model in resolve_models(names, store=store, config=config, overrides=set_):
        typer.echo(f"{model.extractor}: {model.describe()} -> "
                   f"{fetch_model(model, cache_dir=cache_dir, timeout_s=timeout_s)}")


@models_app.command("verify")
@cli_errors
def verify(names: NamesArg = None, store: StoreFromOpt = None, config: ConfigOpt = None,
           set_: SetOpt = None, cache_dir: CacheOpt = None) -> None:
    """Check (offline) that every model the configs need is cached; exit 1 naming those that are not."""
    missing = [m for m in resolve_models(names, store=store, config=config, overrides=set_)
               if cached_path(m, cache_dir=cache_dir) is None]
    for model in missing:
        typer.echo(f"{model.extractor}: {model.describe()} missing", err=True)
    if missing:
        typer.echo(f"{len(missing)} model(s) not cached; run `affectcache models fetch "
                   f"{' '.join(sorted({m.extractor for m in missing}))}`", err=True)
        raise typer.Exit(EXIT_ITEM_FAILURES)
    typer.echo("every model is cached")
