"""The registry of running tracers (pybpftrace/tracers.py): a tracer is one whose file holds
its process's start time; files of processes gone, of a PID since reused, links and other
names are not tracers, and a tracer does not count itself."""

import os
import subprocess
import sys

import pytest

from pybpftrace import tracers
from pybpftrace.guardian import start_time


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setattr(tracers, "TRACERS", str(tmp_path))
    return tmp_path


@pytest.fixture
def other():
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield process.pid
    process.kill()
    process.wait()


def test_a_tracer_is_a_file_holding_its_process_start_time(registry, other):
    (registry / str(other)).write_text(str(start_time(other)))
    (registry / str(os.getpid())).write_text(str(start_time(os.getpid())))  # this one: not another
    assert tracers.running() == {other}


def test_a_file_of_another_process_is_no_tracer(registry, other):
    (registry / str(other)).write_text(str(start_time(other) + 1))  # a PID reused since
    (registry / "4194304").write_text("1")  # no such process
    (registry / f"{other}.new").write_text(str(start_time(other)))  # not yet in place
    (registry / "junk").write_text(str(start_time(other)))
    assert tracers.running() == frozenset()


def test_a_link_is_not_followed(registry, other, tmp_path_factory):
    target = tmp_path_factory.mktemp("elsewhere") / "file"
    target.write_text(str(start_time(other)))
    (registry / str(other)).symlink_to(target)
    assert tracers.running() == frozenset()


def test_announce_writes_this_process_file_in_place(registry):
    tracers.announce()
    assert (registry / str(os.getpid())).read_text() == str(start_time(os.getpid()))
    assert sorted(path.name for path in registry.iterdir()) == [str(os.getpid())]
    tracers._withdraw(str(registry / str(os.getpid())))
    assert not list(registry.iterdir())


def test_no_registry_no_tracers(monkeypatch, tmp_path):
    monkeypatch.setattr(tracers, "TRACERS", str(tmp_path / "absent"))
    assert tracers.running() == frozenset()
