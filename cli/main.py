"""The ``affectcache`` command line: a thin Typer shell over library calls.

Each command group lives in its own module and registers on the shared ``app`` (``cli/_app.py``) when
imported; this module only wires them together. Exit codes are documented in ``_app``.
"""

from __future__ import annotations

from affectcache.cli._app import app

# Commands are listed in --help in the order their modules register them: building first.
# isort: split
from affectcache.cli import extract, status  # isort: skip
from affectcache.cli import demo  # isort: skip
from affectcache.cli import assets, corpora, lasca, lexicon, train  # isort: skip

__all__ = ["app", "assets", "corpora", "demo", "extract", "lasca", "lexicon", "main", "status", "train"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
