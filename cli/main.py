"""The ``affectcache`` command line: a thin Typer shell over library calls.

Exit codes: 0 all done; 1 finished, but some items failed (recorded in the store, see ``status``);
2 refused (bad usage, bad config or manifest, provenance mismatch, lock held); 3 internal error (a bug:
rerun with ``--debug`` for the traceback). Errors print one line unless ``--debug`` is given.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from affectcache.extractors import ConfigError, ExtractorError, available_extractors, get_extractor_cls
from affectcache.extractors.config import field_docs
from affectcache.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Build and inspect affectcache feature stores.")
logger = logging.getLogger("affectcache.cli")
_state = {"debug": False}

EXIT_OK, EXIT_ITEM_FAILURES, EXIT_REFUSED, EXIT_INTERNAL = 0, 1, 2, 3
REFUSALS: tuple[type[BaseException], ...] = (StoreError, ConfigError, ExtractorError, FileNotFoundError)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map library errors to one-line messages and exit codes (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except REFUSALS as exc:
            if _state["debug"]:
                raise
            raise _fail(str(exc), EXIT_REFUSED) from None
        except Exception as exc:
            if _state["debug"]:
                raise
            raise _fail(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the "
                        "traceback, and please report it)", EXIT_INTERNAL) from None

    return wrapper


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    _state["debug"] = debug
    package_logger = logging.getLogger("affectcache")
    package_logger.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    for handler in [h for h in package_logger.handlers if isinstance(h, _StderrHandler)]:
        package_logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    package_logger.propagate = False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it per invocation)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignore assignments: the stream is always the current ``sys.stderr``."""


ManifestOpt = Annotated[Path, typer.Option("--manifest", "-m", help="Manifest (CSV or JSONL).")]
StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Feature store: directory or fsspec URL.")]
OnlyOpt = Annotated[list[str] | None, typer.Option("--only", help="Only this video id (repeatable).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML/JSON file of config fields.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override one field: key=value (repeatable).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-w", help="Local Dask worker processes (default: one per core; 0 = in this process).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Address (tcp://host:8786) or scheduler file of an existing Dask cluster.")]


def _complete_extractor(incomplete: str) -> list[str]:
    return [n for n in available_extractors() if n.startswith(incomplete)]


NameArg = Annotated[str, typer.Argument(help="Extractor / modality name (see `affectcache list`).",
                                        autocompletion=_complete_extractor)]


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
    """Print an extractor's default config as YAML, each field with its documentation."""
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
        if not dot or target not in configs:
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
               redo: Sequence[str] = (), tuning: Mapping[str, Any] | None = None) -> None:
    from affectcache.store.build import build_many
    from affectcache.store.manifest import load_manifest

    if workers is not None and scheduler is not None:
        raise ConfigError("give either --workers or --scheduler, not both")
    items = load_manifest(manifest)
    with _executor(scheduler) as executor:
        reports = build_many(names, items, store, configs=configs, executor=executor, workers=workers,
                             overwrite=overwrite, only=only or None, redo=redo, progress=sys.stderr.isatty(),
                             **(tuning or {}))
    for report in reports:
        typer.echo(report.summary())
        for failure in report.failed:
            typer.echo(f"  failed {failure.video_id}: {failure.error}: {failure.message}", err=True)
    if not all(report.ok for report in reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)


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
) -> None:
    """Extract modalities for the manifest's items into the store (missing/stale items only)."""
    configs = _load_configs(names, config, set_)
    tuning = {key: value for key, value in (("decode_budget_mb", decode_budget_mb),
                                            ("modality_threads", modality_threads)) if value is not None}
    _run_build(names, manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=overwrite,
               only=only, tuning=tuning)


@app.command()
@cli_errors
def rebuild(
    name: NameArg, store: StoreOpt, manifest: ManifestOpt, config: ConfigOpt = None, set_: SetOpt = None,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, only: OnlyOpt = None,
) -> None:
    """Rebuild a modality (or only some ids) with its stored config, or with the given changes."""
    from affectcache.store.zarr_store import FeatureStore

    fs = FeatureStore(store)
    base = dict(fs.provenance(name)["config"]) if fs.has_modality(name) else {}
    configs = _load_configs([name], config, set_, bases={name: base})
    if only:
        _run_build([name], manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=False,
                   only=only, redo=only)
    else:
        _run_build([name], manifest, store, configs, workers=workers, scheduler=scheduler, overwrite=True,
                   only=None)


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


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo corpus and store.")] = Path(
        "demo_out"),
    workers: WorkersOpt = None,
) -> None:
    """Generate the synthetic demo corpus (once), build every modality, and print coverage."""
    from affectcache.store.demo import run_demo
    from affectcache.store.status import store_status

    result = run_demo(out, workers=workers, progress=sys.stderr.isatty())
    typer.echo(format_status(store_status(result.store, result.manifest), result.store))
    typer.echo(f"\nmanifest: {result.manifest_path}\nstore:    {result.store.url}")
    fragment = result.store.catalog("mfcc")[result.manifest.ids()[0]].fragment
    typer.echo("open it: python -c \"import xarray as xr; print(xr.open_zarr('"
               f"{result.store.url}', group='mfcc/fragments/{fragment}', consolidated=False))\"")
    if any(not r.ok for r in result.reports):
        raise typer.Exit(EXIT_ITEM_FAILURES)


# Command groups live in their own modules and register on the shared ``app`` when imported.
from affectcache.cli import assets as _assets  # noqa: E402,F401
from affectcache.cli import corpora as _corpora  # noqa: E402,F401
from affectcache.cli import lasca as _lasca  # noqa: E402,F401
from affectcache.cli import lexicon as _lexicon  # noqa: E402,F401
from affectcache.cli import store_commands as _store_commands  # noqa: E402,F401
from affectcache.cli import train as _train  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
