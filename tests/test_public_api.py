"""The names ``nerx`` exports stay the functions they are, whatever submodule was imported."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, inspect
import nerx
for info in pkgutil.walk_packages(nerx.__path__, "nerx."):
    if ".bundled." in info.name and info.name.count(".") > 2:
        continue
    importlib.import_module(info.name)
for name in ("read", "write", "convert", "evaluate", "load", "extract"):
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
