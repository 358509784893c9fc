"""The shared Typer ``app`` of the command line: logging set-up, the error-to-exit-code mapping and the
options several command groups use. Command modules import it and register their commands on it.

Exit codes: 0 all done; 1 finished, but some items failed (recorded in the store, see ``status``);
2 refused (bad usage, bad config or manifest, provenance mismatch, lock held); 3 internal error (a bug:
rerun with ``--debug`` for the traceback); 4 the environment stopped it (disk full, quota, permission,
read-only filesystem: fix it and rerun); 130 Ctrl-C; 143 SIGTERM. Errors print one line unless
``--debug`` is given.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from affectcache.extractors import ConfigError, ExtractorError, available_extractors
from affectcache.extractors.core.verbosity import (
    THIRD_PARTY_LOGGERS,
    Verbosity,
    apply_verbosity,
    export_verbosity,
    install_native_log_filter,
)
from affectcache.store.env_errors import describe_environment_error
from affectcache.store.errors import StoreError
from affectcache.store.stopping import StopRequested, stop_on_sigterm

if TYPE_CHECKING:
    from collections.abc import Callable

P = ParamSpec("P")
R = TypeVar("R")

# Click's plain help (rich_markup_mode=None): rich tables cut long option names at 80 columns.
app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                  pretty_exceptions_enable=False, help="Build and inspect affectcache feature stores.")
logger = logging.getLogger("affectcache.cli")
_state: dict[str, Any] = {"debug": False, "quiet": False, "native_filter": False, "store": None}

EXIT_OK, EXIT_ITEM_FAILURES, EXIT_REFUSED, EXIT_INTERNAL, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM exits 143 (128 + signal number, the shell's convention)
REFUSALS: tuple[type[BaseException], ...] = (StoreError, ConfigError, ExtractorError, FileNotFoundError)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map library errors to one-line messages and exit codes (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with stop_on_sigterm():
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except StopRequested as exc:
            raise _fail(_with_notes(f"{exc}", exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise _fail(_with_notes("interrupted", exc), EXIT_INTERRUPTED) from None
        except Exception as exc:
            if _state["debug"]:
                raise
            problem = describe_environment_error(exc, where=_state.get("store"))
            if problem is not None:
                raise _fail(_with_notes(problem, exc), EXIT_ENVIRONMENT) from None
            if isinstance(exc, REFUSALS):
                raise _fail(str(exc), EXIT_REFUSED) from None
            raise _fail(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the "
                        "traceback, and please report it)", EXIT_INTERNAL) from None

    return wrapper


def _with_notes(message: str, exc: BaseException) -> str:
    """The message and the notes a command added on the way out (e.g. how much of a build is done)."""
    return "; ".join([message, *getattr(exc, "__notes__", ())])


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"affectcache {version('affectcache')}")
        raise typer.Exit(EXIT_OK)


@app.callback(epilog="\b\nExample (a folder of videos to a store):\n"
                     "  affectcache manifest folder --root videos/ --out m.jsonl\n"
                     "  affectcache extract mfcc face -m m.jsonl -s features.zarr")
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks, debug logs and native library logs.")
                     ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Progress logs and library warnings.")
                       ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors (results go to files/status).")
                     ] = False,
    _show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug
    level: Verbosity = "debug" if debug else "quiet" if quiet else "verbose" if verbose else "normal"
    _state["quiet"] = level == "quiet"
    export_verbosity(level)
    apply_verbosity(level)
    if _state["native_filter"] and level != "debug":
        install_native_log_filter()
    package_logger = logging.getLogger("affectcache")
    package_logger.setLevel({"debug": logging.DEBUG, "verbose": logging.INFO, "normal": logging.WARNING,
                             "quiet": logging.ERROR}[level])
    for handler in [h for h in package_logger.handlers if isinstance(h, _StderrHandler)]:
        package_logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if debug or verbose
                                           else "%(levelname)s: %(message)s"))
    package_logger.addHandler(handler)
    package_logger.propagate = False
    for name in THIRD_PARTY_LOGGERS:  # library warnings (with -v) print like ours
        third = logging.getLogger(name)
        for old in [h for h in third.handlers if isinstance(h, _StderrHandler)]:
            third.removeHandler(old)
        third.addHandler(handler)
        third.propagate = False


def is_quiet() -> bool:
    """Whether ``-q`` was given: commands then print nothing on success."""
    return bool(_state["quiet"])


def echo(message: str) -> None:
    """Print a result line unless ``-q``."""
    if not _state["quiet"]:
        typer.echo(message)


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


