"""The names ``nerx`` exports stay the functions they are, whatever submodule was imported."""

import logging
import os
import subprocess
import sys

import pytest

CHECK = """
import importlib, pkgutil, inspect
import nerx
for info in pkgutil.walk_packages(nerx.__path__, "nerx."):
    if ".bundled." in info.name and info.name.count(".") > 2:
        continue
    importlib.import_module(info.name)
for name in ("read", "write", "convert", "evaluate", "load", "extract", "train"):
    value = getattr(nerx, name)
    assert inspect.isfunction(value), (name, value)
print("ok")
"""


def test_exported_functions_are_not_shadowed_by_submodules():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_python_dash_m_nerx_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "nerx", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nerx ")


@pytest.mark.slow
def test_loading_a_model_leaves_the_callers_transformers_logging_alone():
    code = (
        "import transformers, nerx\n"
        "transformers.logging.set_verbosity_info()\n"
        "nerx.load('news-ner')\n"
        "print(transformers.logging.get_verbosity())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(logging.INFO)
