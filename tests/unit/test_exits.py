"""Exits: which processes' names and code objects go, and when (every event sent before their
exit consumed)."""

import os
import subprocess
import sys
from types import SimpleNamespace

from pybpftrace.codes import Codes
from pybpftrace.exits import Exits
from test_samples import code_record as record


class Value(SimpleNamespace):
    pass


class Program:
    def __init__(self, live: dict[int, int]):
        self.live = live  # the kernel's incarnations map: pid -> incarnation

    def table(self, name):
        assert name == "incarnations"
        return SimpleNamespace(items=lambda: [(Value(value=pid), Value(value=incarnation))
                                              for pid, incarnation in self.live.items()])


class Names:
    def __init__(self):
        self.forgotten = []

    def processes(self):
        return set()

    def forget(self, process):
        self.forgotten.append(process)


class Rings:
    def __init__(self, codes: Codes):
        self.codes, self.names = codes, Names()
        self.produced = self.consumed = 0

    def producer_position(self):
        return self.produced

    def consumer_position(self):
        return self.consumed

    def drain_names(self):
        pass


class Consumer:
    def __init__(self, codes: Codes):
        self.codes, self.exited = codes, []

    def on_exits(self, processes):
        self.exited.append(processes)
        for process in processes:
            self.codes.forget(process)


def code_record(code_id, pid, incarnation):
    return record(code_id, f"f{code_id}", pid=pid, incarnation=incarnation)


def gone_pid() -> int:
    """The PID of a process that has exited (and not come back, for the test's moment)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    assert not os.path.exists(f"/proc/{child.pid}")
    return child.pid


def exits_of(live, codes, follows_calls):
    rings = Rings(codes)
    return Exits(Program(live), rings, follows_calls), rings, Consumer(codes)


def test_an_exited_incarnation_goes_once_its_events_are_consumed():
    codes = Codes()
    codes.add(code_record(1, 40, 3))
    codes.add(code_record(2, 41, 4))
    exits, rings, consumer = exits_of({41: 4}, codes, follows_calls=True)
    rings.produced = 100
    exits.sweep()
    exits.finish(consumer)
    assert consumer.exited == [] and codes.get(1)  # its events up to 100 are not consumed yet
    rings.consumed = 100
    exits.finish(consumer, last=True)
    assert consumer.exited == [{(40, 3)}] and codes.get(1) is None and codes.get(2)


def test_code_objects_of_no_incarnation_go_when_their_process_has_gone():
    """Following calls, a walk's code objects drained after their process went have no
    incarnation: they go when no process of their PID runs, and stay while one does."""
    codes = Codes()
    gone = gone_pid()
    codes.add(code_record(1, gone, 0), lambda pid: 0)
    codes.add(code_record(2, os.getpid(), 0), lambda pid: 0)  # a live process beyond a full incarnations map
    exits, _, consumer = exits_of({}, codes, follows_calls=True)
    exits.finish(consumer, last=True)
    assert consumer.exited == [{(gone, 0)}] and codes.get(1) is None and codes.get(2)


def test_without_calls_followed_no_incarnation_is_not_an_exit():
    """A sampling program gives no process an incarnation, and names its samples at the end:
    their code objects stay (profile names the samples of processes gone since)."""
    codes = Codes()
    codes.add(code_record(1, gone_pid(), 0), lambda pid: 0)
    exits, _, consumer = exits_of({}, codes, follows_calls=False)
    exits.finish(consumer, last=True)
    assert consumer.exited == [] and codes.get(1)
