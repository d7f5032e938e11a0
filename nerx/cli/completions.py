"""Shell completion scripts for ``nerx``, as committed in ``completions/``.

Regenerate them after changing a command or option::

    python -m nerx.cli.completions completions/

The scripts ask ``nerx`` itself for candidates at completion time, so they stay correct as
long as Typer's completion protocol does; a test compares them with what Typer makes now.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: shell -> file name, as each shell looks for it.
FILES = {"bash": "nerx.bash", "zsh": "_nerx", "fish": "nerx.fish"}
PROG = "nerx"
COMPLETE_VAR = "_NERX_COMPLETE"


def script(shell: str) -> str:
    """The completion script Typer makes for ``shell`` (bash, zsh or fish)."""
    # The same function `nerx --show-completion SHELL` uses, minus the shell detection.
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        path = directory / name
        path.write_text(script(shell).rstrip("\n") + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "completions")):
        print(path)
