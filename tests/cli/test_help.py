"""``--help`` at 80 columns: option names whole, lines within the width, an example per main command."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

from affectcache.cli.main import app

if TYPE_CHECKING:
    from collections.abc import Iterator

MAIN_COMMANDS = ("extract", "rebuild", "status", "demo", "manifest", "show-config", "evaluate", "predict",
                 "labels import", "lasca build", "lasca normalise", "train preference", "train ras-face",
                 "train ras-behaviour", "train ras-audio", "train mcdm", "train mcdm-1", "ablate mcdm",
                 "models fetch", "submit abaw", "search")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    # Typer builds on its own copy of click: walk groups by their ``commands``, not by click's classes.
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "affectcache")
def test_help_shows_every_option_name_whole_within_80_columns(path: tuple[str, ...]) -> None:
    text = _help(path)
    names = [o for p in COMMANDS[path].params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
    for name in names:
        assert re.search(re.escape(name) + r"(?![\w-])", text), f"{name} is cut or missing:\n{text}"
    assert "…" not in text
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long


@pytest.mark.parametrize("command", MAIN_COMMANDS)
def test_main_commands_carry_an_example(command: str) -> None:
    text = _help(tuple(command.split()))
    example = text.split("Example:", 1)
    assert len(example) == 2, text
    assert f"affectcache {command}" in example[1]
