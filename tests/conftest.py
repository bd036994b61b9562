"""Shared fixtures: the traced CPython, tools the tests build with, and running pybpftrace."""

import os
import tempfile
from pathlib import Path
import shutil
import signal
import subprocess
import time

import pytest

from support import HOST, parse_shard, shard_items

# A launched target shares the tracer's stdout; unbuffered, its print() writes the text and
# the newline separately and tracer lines could land between them.
os.environ.pop("PYTHONUNBUFFERED", None)


def pytest_addoption(parser):
    parser.addoption("--shard", metavar="K/N", help="run the K-th of N parts of the tests (every N-th from the "
                     "K-th on): N runs at once, on N machines, take each test once (make vm-test SHARDS=N)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--shard"):
        return
    try:
        shard = parse_shard(config.getoption("--shard"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    kept, left = shard_items(items, shard)
    config.hook.pytest_deselected(items=left)
    items[:] = kept


@pytest.fixture(scope="session")
def host_python():
    """The default CPython with function probes (support.HOST), as a path on this machine."""
    HOST.prepare()
    return HOST.host_python


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


@pytest.fixture
def target_tmp(tmp_path):
    """A directory the default interpreter (HOST) sees too: tmp_path, or a new one in its
    chroot (HOST.inside(path) is its path there)."""
    if not HOST.suite:
        yield tmp_path
        return
    HOST.prepare()
    directory = Path(tempfile.mkdtemp(prefix="pybpftrace-test-", dir=f"{HOST.root}/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shared(tmp_path):
    """A directory like /tmp: anyone writes, only owners remove (sticky, world-writable)."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def _tracers_started_here() -> list[int]:
    """pybpftrace processes descended from this test run that still run."""
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                commands[int(entry)] = cmdline.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
    ours = os.getpid()

    def descends(pid: int) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == ours:
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid, argv in commands.items() if argv[1:3] == [b"-m", b"pybpftrace"] and descends(pid)]


@pytest.fixture(autouse=True)
def no_tracer_left_running():
    """However a test ends, no tracer it started runs on (a failed assertion skips its own
    cleanup): each is stopped as Ctrl-C would (its probes and hooks go), killed if it lingers."""
    yield
    left = _tracers_started_here()
    for pid in left:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 30
    for pid in left:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:
                if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # exited, its parent (a Popen) not yet told
            except OSError:
                break
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
