"""``affectcache manifest`` and ``affectcache corpora``: corpus adapters on the command line.

Thin commands over :mod:`affectcache.store.corpora.base`: read and validate a corpus, print its warnings,
write the manifest (and, with ``--store``, label tracks and transcripts). A refusal (errors, or warnings
under ``--strict``) exits with code 2 and writes nothing.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (Typer reads the annotations at runtime)
from typing import Annotated

import typer

from affectcache.cli._app import app, cli_errors


def _complete_corpus(incomplete: str) -> list[str]:
    from affectcache.store.corpora.base import available_corpora

    return [n for n in available_corpora() if n.startswith(incomplete)]


@app.command("corpora")
@cli_errors
def list_corpora() -> None:
    """List the corpus adapters `affectcache manifest` understands."""
    from affectcache.store.corpora.base import available_corpora, get_corpus_adapter

    for name in available_corpora():
        typer.echo(f"{name:<12} {get_corpus_adapter(name).summary}")


@app.command("manifest")
@cli_errors
def manifest(
    corpus: Annotated[str, typer.Argument(help="Corpus adapter (see `affectcache corpora`).",
                                          autocompletion=_complete_corpus)],
    root: Annotated[Path, typer.Option("--root", "-r", help="Your copy of the corpus (annotation files).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (.csv/.jsonl[.gz]).")],
    media: Annotated[Path | None, typer.Option(
        "--media", help="Folder of the corpus's media files (default: --root).")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", "-s", help="Also write label tracks and transcripts into this feature store.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse on warnings too.")] = False,
    glob: Annotated[list[str] | None, typer.Option(
        "--glob", help="folder: files to take, e.g. '*.mp4' (repeatable; default every video suffix).")
    ] = None,
) -> None:
    """Validate a corpus and write its manifest (plus label tracks and transcripts with --store).

    Example:

    \b
    affectcache manifest folder --root videos/ --glob '*.mp4' --out manifest.jsonl
    """
    from affectcache.store.corpora.base import read_corpus, write_corpus

    result = read_corpus(corpus, root, media, **({"patterns": glob} if glob else {}))
    if not strict:  # under --strict the refusal lists them
        for problem in result.warnings:
            typer.echo(str(problem), err=True)
    report = write_corpus(result, out, store=store, strict=strict)
    typer.echo(report.summary())
