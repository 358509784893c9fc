"""``affectcache status``: coverage, failures and staleness of every modality in a store."""

from __future__ import annotations

import json
from pathlib import Path  # noqa: TC003  (Typer evaluates the annotations at run time)
from typing import TYPE_CHECKING, Annotated, Any

import typer

from affectcache.cli._app import StoreOpt, app, cli_errors
from affectcache.extractors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence


@app.command()
@cli_errors
def status(
    store: StoreOpt,
    manifest: Annotated[Path | None, typer.Option(
        "--manifest", "-m", help="Count missing items too.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    by_split: Annotated[bool, typer.Option(
        "--by-split", help="Also show coverage per corpus and split (needs --manifest).")] = False,
) -> None:
    """Per modality: complete / incomplete / missing / failed counts, fingerprint, stale entries."""
    from affectcache.store.manifest import load_manifest
    from affectcache.store.status import store_status
    from affectcache.store.zarr_store import FeatureStore

    fs = FeatureStore(store, read_only=True)
    if by_split and manifest is None:
        raise ConfigError("--by-split needs --manifest (corpus and split come from the manifest)")
    items = load_manifest(manifest) if manifest else None
    rows = store_status(fs, items)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    typer.echo(format_status(rows, fs))
    if by_split and items is not None:
        from affectcache.store.status import coverage_by_split, format_coverage

        typer.echo("\n" + format_coverage(coverage_by_split(fs, items)))


def format_status(rows: Sequence[Any], fs: Any) -> str:
    """A fixed-width table of :func:`store_status` rows, plus failure and staleness details."""
    lines = [f"store: {fs.url}",
             f"{'modality':<22}{'kind':<8}{'ver':<5}{'complete':>9}{'missing':>9}{'incompl.':>9}"
             f"{'failed':>8}{'stale':>7}{'rows':>10}  fingerprint"]
    for r in rows:
        missing = "-" if r.missing is None else str(r.missing)
        lines.append(f"{r.name:<22}{r.kind:<8}{r.version:<5}{r.complete:>9}{missing:>9}{r.incomplete:>9}"
                     f"{r.failed:>8}{len(r.stale):>7}{r.rows:>10}  {r.fingerprint[:12]}")
    for r in rows:
        for vid, rec in sorted(fs.failures(r.name).items()):
            lines.append(f"  {r.name}: failed {vid}: {rec.get('error')}: {rec.get('message')}")
        for vid, why in sorted(r.stale.items()):
            lines.append(f"  {r.name}: stale {vid}: {why}")
        for vid, warning in r.warnings.items():
            lines.append(f"  {r.name}: warning {vid}: {warning}")
    if not rows:
        lines.append("(empty store)")
    return "\n".join(lines)


