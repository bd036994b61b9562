"""Shared fixtures: the traced CPython, tools the tests build with, and running pybpftrace."""

import os
import shutil
import subprocess

import pytest

from support import PYTHON311

# A launched target shares the tracer's stdout; unbuffered, its print() writes the text and
# the newline separately and tracer lines could land between them.
os.environ.pop("PYTHONUNBUFFERED", None)


@pytest.fixture(scope="session")
def python311():
    assert os.path.exists(PYTHON311), f"{PYTHON311} is missing: run make setup"
    return PYTHON311


@pytest.fixture(scope="session")
def require_tools():
    """Fail (not skip) when a tool `make setup` installs is missing: a skip would hide a
    broken setup."""

    def require(*tools, header=None):
        for tool in tools:
            assert shutil.which(tool), f"{tool} is missing: run make setup"
        if header:
            probe = subprocess.run(
                ["gcc", "-E", "-x", "c", "-"], input=f"#include <{header}>\n",
                capture_output=True, text=True,
            )
            assert probe.returncode == 0, f"<{header}> is missing: run make setup"

    return require
