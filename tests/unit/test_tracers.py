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


def test_announce_removes_the_files_of_tracers_gone(registry, other):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = gone.stdout.strip()
    (registry / dead).write_text("1")  # a tracer killed
    (registry / f"{dead}.new").write_text("")  # killed while announcing
    (registry / str(other)).write_text("1")  # its PID runs again: kept until that process exits
    (registry / f"{other}.new").write_text("")  # perhaps announcing now: kept
    tracers.announce()
    names = sorted(path.name for path in registry.iterdir())
    assert names == sorted([str(os.getpid()), str(other), f"{other}.new"])
    tracers._withdraw(str(registry / str(os.getpid())))


def test_past_the_limit_of_tracers_the_rest_are_traced(registry, monkeypatch, other):
    monkeypatch.setattr(tracers, "TRACERS_MAX", 1)
    (registry / str(other)).write_text(str(start_time(other)))
    (registry / "1").write_text(str(start_time(1)))
    assert len(tracers.running()) == 1


def test_files_of_no_tracer_take_no_place(registry, monkeypatch, other):
    monkeypatch.setattr(tracers, "TRACERS_MAX", 1)
    for pid in range(4194300, 4194304):
        (registry / str(pid)).write_text("1")
    (registry / str(other)).write_text(str(start_time(other)))
    assert tracers.running() == {other}
