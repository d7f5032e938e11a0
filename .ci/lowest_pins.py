"""Print the constraints that go with ``uv pip install --resolution lowest-direct``.

The resolver itself picks the floor of every dependency that pyproject.toml declares. Two
packages need pinning beside it:

- torch, to the build already installed (the CPU wheel CI installs first): torch's floor
  cannot be installed here without pulling gigabytes of CUDA packages.
- typer-slim, to typer's floor. spaCy's older helper packages depend on typer-slim, which
  installs the same ``typer`` package as typer; left free, a newer typer-slim overwrites some
  of typer's files, and the run tests neither version.

Usage: python .ci/lowest_pins.py > constraints.txt
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floor(requirements: list[str], name: str) -> str:
    """The version after ``>=`` in the requirement on ``name``."""
    for requirement in requirements:
        match = re.fullmatch(rf"{re.escape(name)}\s*>=\s*([\w.]+)\s*(,.*)?", requirement)
        if match:
            return match.group(1)
    raise SystemExit(f"pyproject.toml declares no floor for {name}")


def main() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    torch = importlib.metadata.version("torch").split("+")[0]
    sys.stdout.write(f"torch=={torch}\ntyper-slim=={floor(dependencies, 'typer')}\n")


if __name__ == "__main__":
    main()
