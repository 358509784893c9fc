"""The ``affectcache`` command line: a thin Typer shell over library calls.

Each command group lives in its own module and registers on the shared ``app`` (``cli/_app.py``) when
imported; this module only wires them together. Exit codes are documented in ``_app``.
"""

from __future__ import annotations

from affectcache.cli._app import _state, app

# Commands are listed in --help in the order their modules register them: building first.
# isort: split
from affectcache.cli import extract, status  # isort: skip
from affectcache.cli import demo  # isort: skip
from affectcache.cli import assets, corpora, labels, lasca, lexicon, models  # isort: skip
from affectcache.cli.training import train  # isort: skip
from affectcache.cli import store_commands  # isort: skip
from affectcache.cli.training import search, va  # isort: skip

__all__ = ["app", "assets", "corpora", "demo", "extract", "labels", "lasca", "lexicon", "main",
           "models", "search", "status", "store_commands", "train", "va"]


def main() -> None:
    """Console-script entry point (a real process: native library logs may be filtered from its stderr)."""
    _state["native_filter"] = True
    app()


if __name__ == "__main__":
    main()
