"""The eval_frame hook's holders and its guardian, on a real process's memory: a child that
lays out a runtime with two interpreters in a buffer of its own, at an address it prints."""

import os
import subprocess
import sys

import pytest

from pybpftrace import guardian
from pybpftrace.guardian import RELEASED, Memory, Refused, Target, hold_hook, release_hook, set_hook, start_time

EVALUATOR = 0x5EED0000
FIELD, NEXT = 8, 16  # in each fake interpreter: eval_frame, then the next interpreter
# The buffer: the runtime's first interpreter at 0, interpreters at 32 and 64 (64 the last).
LAYOUT = """
import ctypes, struct, sys
buffer = ctypes.create_string_buffer(96)
base = ctypes.addressof(buffer)
struct.pack_into("<Q", buffer, 0, base + 32)
struct.pack_into("<QQQ", buffer, 32, 0, 0, base + 64)
struct.pack_into("<QQQ", buffer, 64, 0, 0, 0)
print(base, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def hooks(tmp_path, monkeypatch):
    monkeypatch.setattr(guardian, "HOOKS", str(tmp_path / "eval-hooks"))
    return tmp_path / "eval-hooks"


@pytest.fixture
def process():
    child = subprocess.Popen([sys.executable, "-c", LAYOUT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    base = int(child.stdout.readline())
    yield child, Target(child.pid, start_time(child.pid), base, EVALUATOR, FIELD, 0, NEXT)
    child.kill()
    child.wait()


def hooks_of(target: Target) -> list[int]:
    memory = Memory(target.pid)
    try:
        return [memory.pointer(target.runtime + offset + FIELD) for offset in (32, 64)]
    finally:
        memory.close()


def holder(process: subprocess.Popen) -> tuple[int, int]:
    return process.pid, start_time(process.pid)


def tracer():
    """A stand-in for a tracer: a process alive until killed."""
    return subprocess.Popen(["sleep", "600"])


def test_set_in_every_interpreter_and_back_when_the_last_holder_lets_go(hooks, process):
    _, target = process
    first, second = tracer(), tracer()
    try:
        set_hook(target, holder(first))
        assert hooks_of(target) == [EVALUATOR, EVALUATOR]
        set_hook(target, holder(second))
        assert sorted(os.listdir(hooks / target.key)) == sorted(f"{p}-{s}" for p, s in map(holder, (first, second)))
        release_hook(target, holder(first))
        assert hooks_of(target) == [EVALUATOR, EVALUATOR]  # the second still holds it
        release_hook(target, holder(second))
        assert hooks_of(target) == [0, 0]
        assert os.listdir(hooks) == []  # nothing left behind
    finally:
        first.kill()
        second.kill()


def test_a_holder_gone_without_letting_go_is_forgotten(hooks, process):
    _, target = process
    gone, staying = tracer(), tracer()
    try:
        set_hook(target, holder(gone))
        set_hook(target, holder(staying))
        gone.kill()
        gone.wait()
        release_hook(target, holder(staying))
        assert hooks_of(target) == [0, 0]  # the one gone no longer counts
        assert os.listdir(hooks) == []
    finally:
        staying.kill()


def test_an_inherited_hook_is_held_without_writing(hooks, process):
    """A child forked while the hook was set has it already: held, never written; a process
    without it (forked before it was set) is left alone."""
    _, target = process
    stand_in = tracer()
    try:
        assert not hold_hook(target, holder(stand_in))
        assert hooks_of(target) == [0, 0]
        memory = Memory(target.pid, write=True)
        for offset in (32, 64):
            memory.write_pointer(target.runtime + offset + FIELD, EVALUATOR)  # as a fork copies it
        memory.close()
        assert hold_hook(target, holder(stand_in))
        assert os.listdir(hooks / target.key) == ["%d-%d" % holder(stand_in)]
        release_hook(target, holder(stand_in))
        assert hooks_of(target) == [0, 0]
    finally:
        stand_in.kill()


def test_another_evaluator_is_never_replaced(hooks, process):
    _, target = process
    memory = Memory(target.pid, write=True)
    memory.write_pointer(target.runtime + 64 + FIELD, 0xDEAD0000)  # the second interpreter's
    memory.close()
    with pytest.raises(Refused, match="0xdead0000"):
        set_hook(target, (os.getpid(), start_time(os.getpid())))
    release_hook(target, (os.getpid(), start_time(os.getpid())))
    assert hooks_of(target) == [0, 0xDEAD0000]  # the first set back, the other's left alone


@pytest.mark.parametrize("released, left", [(False, [0, 0]), (True, [EVALUATOR, EVALUATOR])])
def test_the_guardian_lets_go_when_its_tracer_is_gone(hooks, process, released, left):
    """The guardian's stdin closes when the tracer is gone, however it went: unless the tracer
    said it let go itself, the guardian lets go of each hook it was told of in its place. (Told
    so here while the hook is still set, to see that the guardian then writes nothing.)"""
    _, target = process
    stand_in = tracer()
    try:
        set_hook(target, holder(stand_in))
        environment = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(guardian.__file__))}
        guard = subprocess.Popen(
            [sys.executable, "-c", f"import pybpftrace.guardian as g; g.HOOKS = {str(hooks)!r}; "
             "import sys; sys.exit(g.guard(sys.argv[1:]))", *map(str, holder(stand_in))],
            stdin=subprocess.PIPE, env=environment)
        guard.stdin.write(b"hook 1 2 3\n")  # not a target: ignored
        guard.stdin.write(target.line())
        if released:
            guard.stdin.write(RELEASED + b"\n")
        guard.stdin.close()  # the tracer's end of the pipe, gone
        assert guard.wait(timeout=60) == 0
        assert hooks_of(target) == left
    finally:
        stand_in.kill()


def test_memory_reads_are_exact(process):
    _, target = process
    memory = Memory(target.pid)
    try:
        assert memory.pointer(target.runtime) == target.runtime + 32
        assert list(guardian.interpreters(memory, target)) == [target.runtime + 32, target.runtime + 64]
    finally:
        memory.close()


def test_an_interpreter_list_that_loops_ends(process):
    _, target = process
    memory = Memory(target.pid, write=True)
    memory.write_pointer(target.runtime + 64 + NEXT, target.runtime + 32)  # the last points back at the first
    try:
        assert list(guardian.interpreters(memory, target)) == [target.runtime + 32, target.runtime + 64]
    finally:
        memory.close()

