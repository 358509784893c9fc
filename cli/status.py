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
    show_all: Annotated[bool, typer.Option("--all", help="List every failed/stale entry.")] = False,
) -> None:
    """Per modality: complete / incomplete / missing / failed counts, fingerprint, stale entries.

    Example:

    \b
    affectcache status -s features.zarr -m manifest.jsonl --by-split
    """
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
    typer.echo(format_status(rows, fs, show_all=show_all))
    if by_split and items is not None:
        from affectcache.store.status import coverage_by_split, format_coverage

        typer.echo("\n" + format_coverage(coverage_by_split(fs, items)))


MAX_LISTED = 10
"""Failures, stale and flagged entries listed per modality before "... and N more"."""


def format_status(rows: Sequence[Any], fs: Any, *, show_all: bool = False) -> str:
    """A fixed-width table of :func:`store_status` rows, plus failure and staleness details (each list
    capped at :data:`MAX_LISTED` unless ``show_all``)."""
    lines = [f"store: {fs.url}",
             f"{'modality':<22}{'kind':<8}{'ver':<5}{'complete':>9}{'missing':>9}{'incompl.':>9}"
             f"{'failed':>8}{'n/a':>6}{'stale':>7}{'rows':>10}  fingerprint"]
    for r in rows:
        missing = "-" if r.missing is None else str(r.missing)
        lines.append(f"{r.name:<22}{r.kind:<8}{r.version:<5}{r.complete:>9}{missing:>9}{r.incomplete:>9}"
                     f"{r.failed:>8}{r.not_applicable:>6}{len(r.stale):>7}{r.rows:>10}  {r.fingerprint[:12]}")
    for r in rows:
        failures = fs.failures(r.name)
        details = [f"failed {vid}: {rec.get('error')}: {rec.get('message')}"
                   for vid, rec in sorted(failures.items()) if not rec.get("not_applicable")]
        details += [f"not applicable {vid}: {rec.get('message')}"
                    for vid, rec in sorted(failures.items()) if rec.get("not_applicable")]
        details += [f"stale {vid}: {why}" for vid, why in sorted(r.stale.items())]
        details += [f"warning {vid}: {warning}" for vid, warning in r.warnings.items()]
        shown = details if show_all else details[:MAX_LISTED]
        lines.extend(f"  {r.name}: {d}" for d in shown)
        if len(details) > len(shown):
            lines.append(f"  {r.name}: ... and {len(details) - len(shown)} more; --all or --json")
    if not rows:
        lines.append("(empty store)")
    return "\n".join(lines)
