"""``affectcache labels import``: your own per-frame or timed labels as a store label track."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (Typer reads the annotations at runtime)
from typing import Annotated

import typer

from affectcache.cli._app import ManifestOpt, StoreOpt, app, cli_errors, echo

labels_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Label tracks from your own CSV files.")
app.add_typer(labels_app, name="labels")


@labels_app.command("import")
@cli_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV: video_id, frame or time_s, and a value column.")],
    store: StoreOpt, manifest: ManifestOpt,
    track: Annotated[str, typer.Option("--track", "-t", help="Track name (stored as labels/<track>).")],
    value_column: Annotated[str, typer.Option("--value-column", help="Column holding the values.")] = "value",
) -> None:
    """Validate a label CSV against the manifest and write it as labels/<track> (all or nothing).

    Example:

    \b
    affectcache labels import arousal.csv -s features.zarr -m manifest.jsonl \\
        --track arousal
    """
    from affectcache.store.label_import import import_labels
    from affectcache.store.manifest import load_manifest

    done = import_labels(store, track, file, load_manifest(manifest), value_column=value_column)
    echo(f"{done.track}: {done.videos} videos, {done.rows} rows")
