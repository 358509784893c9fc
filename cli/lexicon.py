"""``affectcache lexicon list|show|generate``: the semantic lexicons of the LaScA pipeline."""

from __future__ import annotations

import json
from pathlib import Path  # noqa: TC003  (Typer reads the annotations at runtime)
from typing import Annotated

import typer

from affectcache.cli._app import app, cli_errors
from affectcache.extractors.engines.textgen import TEXT_GENERATORS, make_text_generator
from affectcache.extractors.lasca.lexicon import (
    available_lexicons,
    generate_lexicon,
    lasca_feature_names,
    load_lexicon,
)

lexicon_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Feature -> affect label lexicons (LaScA).")
app.add_typer(lexicon_app, name="lexicon")


@lexicon_app.command("list")
@cli_errors
def list_lexicons() -> None:
    """Shipped and generated lexicons, with versions."""
    for name, versions in available_lexicons().items():
        latest = load_lexicon(name)
        typer.echo(f"{name:<20} versions {versions}  latest sha256 {latest.sha256[:16]}  {latest.path}")


@lexicon_app.command("show")
@cli_errors
def show(
    name: Annotated[str, typer.Argument(help="Lexicon name (or a .json file).")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
) -> None:
    """Print a lexicon as JSON (labels, source, fill rule, filled features)."""
    typer.echo(json.dumps(load_lexicon(name, version).to_json(), indent=2))


@lexicon_app.command("generate")
@cli_errors
def generate(
    model: Annotated[str, typer.Option(help="Local model folder (or id the backend can load offline).")],
    name: Annotated[str, typer.Option(help="Name of the new lexicon (saved as its next version).")],
    backend: Annotated[str, typer.Option(help=f"One of {sorted(TEXT_GENERATORS)}.")] = "transformers",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    n_mfcc: Annotated[int, typer.Option(help="MFCC features to label (mfcc_0 ...).")] = 15,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 2048,
    out_dir: Annotated[Path | None, typer.Option(
        help="Folder to save into (default $AFFECTCACHE_HOME/lexicons).")] = None,
) -> None:
    """Run the LaScA Appendix A instruction through a local LLM and save the validated answer.

    A bad answer (not a dict, features missing, values not 3-6 words, punctuation) is refused with
    every reason (exit 2), and nothing is saved.
    """
    generator = make_text_generator(backend, model, device=device)
    lexicon = generate_lexicon(generator, name=name, features=lasca_feature_names(n_mfcc),
                               max_new_tokens=max_new_tokens, directory=out_dir)
    typer.echo(f"saved {lexicon.ref} ({len(lexicon.labels)} labels, sha256 {lexicon.sha256[:16]}) "
               f"-> {lexicon.path}")
