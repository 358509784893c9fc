"""``affectcache list``, ``show-config``, ``extract`` and ``rebuild``: building modalities into a store."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path  # noqa: TC003  (Typer evaluates the annotations at run time)
from typing import TYPE_CHECKING, Annotated, Any

import typer

from affectcache.cli._app import (
    EXIT_ITEM_FAILURES,
    EXIT_REFUSED,
    ConfigOpt,
    ManifestOpt,
    NameArg,
    OnlyOpt,
    SchedulerOpt,
    SetOpt,
    StoreOpt,
    WorkersOpt,
    _complete_extractor,
    _state,
    app,
    cli_errors,
    echo,
    is_quiet,
)
from affectcache.cli.stops import note_progress
from affectcache.extractors import ConfigError, available_extractors, get_extractor_cls
from affectcache.extractors.core.config import field_docs
from affectcache.extractors.core.registry import did_you_mean
from affectcache.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from affectcache.store.runner import BuildReport


@app.command("list")
@cli_errors
def list_extractors() -> None:
    """List the registered extractors."""
    for name in available_extractors():
        cls = get_extractor_cls(name)
        typer.echo(f"{name:<20} v{cls.version:<3} {cls.modality_kind:<8} {cls.summary}")


@app.command("show-config")
@cli_errors
def show_config(name: NameArg) -> None:
    """Print an extractor's default config as YAML, each field with its documentation.

    Example:

    \b
    affectcache show-config clip-face
    """
    import yaml

    cls = get_extractor_cls(name)
    docs = field_docs(cls.config_type)
    for key, value in cls.config_type().to_dict().items():
        for line in docs.get(key, "").splitlines():
            typer.echo(f"# {line.strip()}")
        typer.echo(yaml.safe_dump({key: value}, sort_keys=False).rstrip())


def _load_configs(names: Sequence[str], config_file: Path | None, overrides: Sequence[str] | None,
                  bases: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Config fields per modality from a YAML/JSON file and ``--set`` overrides, checked strictly.

    With one modality the file holds its fields and ``--set key=value`` sets one. With several, the file
    maps modality names to their fields and overrides name their modality: ``--set mfcc.n_mfcc=20``.
    """
    import yaml

    configs: dict[str, dict[str, Any]] = {name: dict((bases or {}).get(name, {})) for name in names}
    single = len(names) == 1
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_file}: not valid YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of config fields")
        per_name = {names[0]: loaded} if single else loaded
        unknown = sorted(set(per_name) - set(names))
        if unknown or not all(isinstance(v, dict) for v in per_name.values()):
            raise ConfigError(f"{config_file}: with several modalities, map each of {list(names)} to its "
                              f"fields (unexpected: {unknown})")
        for name, fields in per_name.items():
            configs[name].update(fields)
    for item in overrides or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        target, dot, field = key.partition(".")
        if dot and target not in configs:  # config fields never hold a dot: this names a modality
            raise ConfigError(f"--set {item!r}: {target!r} is not one of the names being built "
                              f"({', '.join(names)}){did_you_mean(target, list(names))}")
        if not dot:
            if not single:
                raise ConfigError(f"--set {item!r}: name the modality, as in --set {names[0]}.FIELD=VALUE")
            target, field = names[0], key
        configs[target][field] = yaml.safe_load(raw) if raw.strip() else None
    for name, data in configs.items():
        get_extractor_cls(name).config_type.from_dict(data)  # refuse bad fields before any work
    return configs


@contextlib.contextmanager
def _executor(scheduler: str | None) -> Iterator[Any]:
    if scheduler is None:
        yield None
        return
    from affectcache.store.executors import scheduler_client

    with scheduler_client(scheduler) as client:
        yield client


def _run_build(names: Sequence[str], manifest: Path, store: str, configs: dict[str, dict[str, Any]], *,
               workers: int | None, scheduler: str | None, overwrite: bool, only: Sequence[str] | None,
               redo: Sequence[str] = (), tuning: Mapping[str, Any] | None = None,
               retry_failed: bool = False, dry_run: bool = False) -> None:
    from affectcache.store.manifest import load_manifest
    from affectcache.store.runner import build_many

    if workers is not None and scheduler is not None:
        raise ConfigError("give either --workers or --scheduler, not both")
    items = load_manifest(manifest)
    if dry_run:
        plans = build_many(names, items, store, configs=configs, overwrite=overwrite, only=only or None,
                           redo=redo, retry_failed=retry_failed, dry_run=True)
        typer.echo(format_plan(plans))
        if any(plan.refused for plan in plans):
            raise typer.Exit(EXIT_REFUSED)
        return
    _state["store"] = store
    try:
        with _executor(scheduler) as executor:
            reports = build_many(names, items, store, configs=configs, executor=executor, workers=workers,
                                 overwrite=overwrite, only=only or None, redo=redo,
                                 progress=sys.stderr.isatty() and not is_quiet(), retry_failed=retry_failed,
                                 dry_run=False, **(tuning or {}))
    except BaseException as exc:
        note_progress(exc, store, names)
        raise
    for report in reports:  # each failure was logged once, as it happened; here only the counts
        echo(report.summary())
    if not all(report.ok for report in reports):
        typer.echo(f"{sum(len(r.failed) for r in reports)} item(s) failed: `affectcache status -s {store}` "
                   "lists them", err=True)
        raise typer.Exit(EXIT_ITEM_FAILURES)


PLAN_LISTED = 10
"""Ids a plan names per line before "... and N more"."""

DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the plan (what would be built, skipped, refused) and write nothing.")]


def format_plan(plans: Sequence[BuildReport]) -> str:
    """The dry-run plan, one block per modality."""
    def ids(values: Sequence[str]) -> str:
        more = len(values) - PLAN_LISTED
        return ", ".join(values[:PLAN_LISTED]) + (f" ... and {more} more" if more > 0 else "")

    lines = ["plan (dry run: nothing was written)"]
    for plan in plans:
        if plan.refused:
            lines.append(f"{plan.modality}: refused: {plan.refused}")
            continue
        lines.append(f"{plan.modality}: {len(plan.written)} to build, {len(plan.skipped)} complete, "
                     f"{len(plan.remain_failed)} failed and unchanged, {len(plan.not_applicable)} not "
                     f"applicable, {len(plan.failed)} missing upstream")
        for what, values in (("build", plan.written), ("failed and unchanged (--retry-failed)",
                                                       plan.remain_failed)):
            if values:
                lines.append(f"  {what}: {ids(values)}")
        for what, failures in (("not applicable", plan.not_applicable), ("missing upstream", plan.failed)):
            for failure in failures[:PLAN_LISTED]:
                lines.append(f"  {what}: {failure.video_id}: {failure.message}")
            if len(failures) > PLAN_LISTED:
                lines.append(f"  ... and {len(failures) - PLAN_LISTED} more {what}")
    return "\n".join(lines)


@app.command()
@cli_errors
def extract(
    names: Annotated[list[str], typer.Argument(
        help="Extractor / modality names (see `affectcache list`); several are built together, decoding "
             "each item once.", autocompletion=_complete_extractor)],
    manifest: ManifestOpt, store: StoreOpt, config: ConfigOpt = None, set_: SetOpt = None,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Delete the modality first and rebuild it all.")] = False,
    only: OnlyOpt = None,
    decode_budget_mb: Annotated[int | None, typer.Option(
        min=0, help="MB of decoded media (frames, audio) a task keeps so the modalities built together "
                    "decode each item once; items beyond it are decoded per modality (default 2048)."),
    ] = None,
    modality_threads: Annotated[int | None, typer.Option(
        min=1, help="Threads a task runs its modalities on, side by side on halves of its items, so CPU "
                    "work (MediaPipe, decoding) overlaps GPU forwards (default 3 on CUDA, else 1).")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Try again items whose recorded failure is still current.")] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Extract modalities for the manifest's items into the store (missing/stale items only).

    A modality already in the store keeps its stored config unless --set/--config change it.

    Example:

    \b
    affectcache extract mfcc face clip-face -m m.jsonl -s features.zarr \\
        --set clip-face.device=cuda
    """
    stored = None if config or set_ else _stored_configs(store, names)
    configs = _load_configs(names, config, set_, bases=stored)
    tuning = {key: value for key, value in (("decode_budget_mb", decode_budget_mb),
                                            ("modality_threads", modality_threads)) if value is not None}
    _run_build(names, manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=overwrite,
               only=only, tuning=tuning, retry_failed=retry_failed, dry_run=dry_run)


def _stored_configs(store: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The output fields of the configs the named modalities were built with (those in the store);
    runtime fields (device, batch size) stay this machine's defaults."""
    from affectcache.store.zarr_store import FeatureStore

    try:
        fs = FeatureStore(store, read_only=True)
    except (FileNotFoundError, StoreError):
        return {}
    return {n: get_extractor_cls(n).config_type.from_dict(fs.provenance(n)["config"]).output_fields()
            for n in names if fs.has_modality(n)}


@app.command()
@cli_errors
def rebuild(
    name: NameArg, store: StoreOpt, manifest: ManifestOpt, config: ConfigOpt = None, set_: SetOpt = None,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, only: OnlyOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Rebuild a modality (or only some ids) with its stored config, or with the given changes.

    Example:

    \b
    affectcache rebuild face -m m.jsonl -s features.zarr --only vid001
    """
    from affectcache.store.errors import FeatureNotFoundError
    from affectcache.store.zarr_store import FeatureStore

    try:
        fs = FeatureStore(store, read_only=dry_run)
    except FeatureNotFoundError:  # a dry run on a store not created yet: nothing stored to start from
        fs = None
    base = dict(fs.provenance(name)["config"]) if fs is not None and fs.has_modality(name) else {}
    configs = _load_configs([name], config, set_, bases={name: base})
    if only:
        _run_build([name], manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=False,
                   only=only, redo=only, dry_run=dry_run)
    else:
        _run_build([name], manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=True,
                   only=None, dry_run=dry_run)


