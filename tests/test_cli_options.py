"""Options shared by construction: a flag means the same, with the same short form, in every
command that has it."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from nerx.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = str(SAMPLES / "news.jsonl")

#: long flag -> every spelling it has wherever it appears
SHARED = {
    "--from": {"--from", "-f"},
    "--to": {"--to", "-t"},
    "--output": {"--output", "-o"},
    "--device": {"--device", "-d"},
    "--quiet": {"--quiet", "-q"},
    "--model": {"--model", "-m"},
    "--lang": {"--lang"},
    "--precision": {"--precision"},
}


def spellings() -> dict[str, dict[str, set[str]]]:
    """command -> long flag -> its spellings, for the shared flags each command has."""
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        found[name] = {
            flag: set(param.opts) | set(param.secondary_opts)
            for param in command.params
            for flag in SHARED
            if flag in param.opts
        }
    return found


def test_shared_options_have_the_same_spellings_everywhere():
    found = spellings()
    for command, flags in found.items():
        for flag, names in flags.items():
            assert names == SHARED[flag], (command, flag, names)


def test_the_commands_that_read_and_write_take_the_shared_options():
    found = spellings()
    assert {"--from", "--to", "--output", "--device", "--quiet", "--model", "--lang"} <= set(
        found["extract"]
    )
    assert {"--from", "--output", "--device", "--quiet", "--lang", "--precision"} <= set(
        found["train"]
    )
    assert {"--from", "--to", "--quiet"} <= set(found["convert"])
    assert {"--output"} <= set(found["export"])


def test_eval_formats_have_short_forms():
    result = CliRunner().invoke(app, ["eval", NEWS, NEWS, "-g", "jsonl", "-p", "jsonl", "--json"])
    assert result.exit_code == 0, result.output
    assert '"f1": 1.0' in result.stdout
