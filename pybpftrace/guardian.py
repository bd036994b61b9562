"""What writes and restores an interpreter's eval_frame hook (hook.py), light enough to be
the guardian process too (`python -m pybpftrace.guardian`): each traced process's hook holders
under a lock, its memory through /proc/PID/mem, and the guardian itself, which outlives a
tracer and lets go of the hook in its place when the tracer is gone without having done so."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from dataclasses import dataclass, replace
from typing import Iterator, Optional

HOOKS = "/run/pybpftrace/eval-hooks"
INTERPRETERS_MAX = 256  # interpreters of one process looked at
# What a tracer tells its guardian, a line each: each process whose hook it holds (before it
# is set), and, last, that it has let go of them all itself.
HOOK = b"hook"
RELEASED = b"released"


class Refused(Exception):
    """The process's evaluator is another tool's."""


def start_time(pid: int) -> Optional[int]:
    """When the process started (clock ticks since boot): with its PID, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[19])


def _alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


@dataclass(frozen=True)
class Target:
    """A process whose hook is set: its identity, and where its interpreter's fields are."""

    pid: int
    started: int
    runtime: int  # _PyRuntime, moved
    evaluator: int  # _PyEval_EvalFrameDefault, moved
    field: int  # offset of eval_frame in PyInterpreterState
    interpreters_head: int  # offset of the first interpreter in _PyRuntime
    interpreter_next: int

    @property
    def key(self) -> str:
        return f"{self.pid}-{self.started}"

    def line(self) -> bytes:
        """How its guardian is told of it."""
        values = (self.pid, self.started, self.runtime, self.evaluator, self.field, self.interpreters_head,
                  self.interpreter_next)
        return b" ".join([HOOK, *(str(value).encode() for value in values)]) + b"\n"

    def forked(self, child: int, started: int) -> "Target":
        """A child it forked: the same memory at the same addresses, its hook inherited."""
        return replace(self, pid=child, started=started)


class Memory:
    """A process's memory through /proc/PID/mem."""

    def __init__(self, pid: int, write: bool = False):
        self._fd = os.open(f"/proc/{pid}/mem", (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)

    def pointer(self, address: int) -> int:
        data = os.pread(self._fd, 8, address)
        if len(data) != 8:
            raise OSError("short read")
        return int.from_bytes(data, "little")

    def byte(self, address: int) -> int:
        return os.pread(self._fd, 1, address)[0]

    def int32(self, address: int) -> int:
        return int.from_bytes(os.pread(self._fd, 4, address), "little", signed=True)

    def write_pointer(self, address: int, value: int) -> None:
        if os.pwrite(self._fd, value.to_bytes(8, "little"), address) != 8:
            raise OSError("short write")

    def close(self) -> None:
        os.close(self._fd)


def interpreters(memory: Memory, target: Target) -> Iterator[int]:
    """Each interpreter of the process (the main one first), at most INTERPRETERS_MAX."""
    interp = memory.pointer(target.runtime + target.interpreters_head)
    seen: set[int] = set()
    while interp and interp not in seen and len(seen) < INTERPRETERS_MAX:
        seen.add(interp)
        yield interp
        interp = memory.pointer(interp + target.interpreter_next)


class Registry:
    """The tracers holding one process's hook, as files named by their identity, under a lock."""

    def __init__(self, target: Target):
        self._directory = f"{HOOKS}/{target.key}"
        os.makedirs(self._directory, mode=0o700, exist_ok=True)
        self._lock = os.open(f"{HOOKS}/{target.key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o600)

    def __enter__(self) -> "Registry":
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exception) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)

    def holders(self) -> list[tuple[int, int]]:
        """The tracers holding it that still run (those gone are forgotten)."""
        held = []
        for name in os.listdir(self._directory):
            pid, _, started = name.partition("-")
            if pid.isdigit() and started.isdigit() and _alive(int(pid), int(started)):
                held.append((int(pid), int(started)))
            else:
                os.unlink(os.path.join(self._directory, name))
        return held

    def add(self, holder: tuple[int, int]) -> None:
        os.close(os.open(f"{self._directory}/{holder[0]}-{holder[1]}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))

    def remove(self, holder: tuple[int, int]) -> None:
        try:
            os.unlink(f"{self._directory}/{holder[0]}-{holder[1]}")
        except FileNotFoundError:
            pass

    def close(self, last: bool) -> None:
        os.close(self._lock)
        if last:
            for path in (self._directory, self._directory + ".lock"):
                try:
                    (os.rmdir if path == self._directory else os.unlink)(path)
                except OSError:
                    pass


def set_hook(target: Target, holder: tuple[int, int]) -> None:
    """Set the hook in every interpreter of the process for holder (a tracer's identity)."""
    forget_gone()
    registry = Registry(target)
    try:
        with registry:
            registry.holders()
            memory = Memory(target.pid, write=True)
            try:
                for interp in interpreters(memory, target):
                    current = memory.pointer(interp + target.field)
                    if current == 0:
                        memory.write_pointer(interp + target.field, target.evaluator)
                    elif current != target.evaluator:
                        raise Refused(f"{current:#x}")
                registry.add(holder)
            finally:
                memory.close()
    finally:
        registry.close(last=False)


def hold_hook(target: Target, holder: tuple[int, int]) -> bool:
    """holder holds the hook a process inherited (a child forked while it was set), where the
    process has it: nothing is written."""
    forget_gone()
    registry = Registry(target)
    try:
        with registry:
            memory = Memory(target.pid)
            try:
                inherited = any(memory.pointer(interp + target.field) == target.evaluator
                                for interp in interpreters(memory, target))
            finally:
                memory.close()
            if inherited:
                registry.add(holder)
            return inherited
    finally:
        registry.close(last=False)


def release_hook(target: Target, holder: tuple[int, int]) -> None:
    """holder is done: the hook goes back to NULL if no other tracer holds it (and if it is
    still ours: an evaluator set since by another tool stays)."""
    registry = Registry(target)
    last = True
    try:
        with registry:
            registry.remove(holder)
            last = not registry.holders()
            if last and _alive(target.pid, target.started):
                _write_back(target)
    finally:
        registry.close(last)


def _write_back(target: Target) -> None:
    try:
        memory = Memory(target.pid, write=True)
    except OSError:
        return  # it exited meanwhile
    try:
        for interp in interpreters(memory, target):
            if memory.pointer(interp + target.field) == target.evaluator:
                memory.write_pointer(interp + target.field, 0)
    except OSError:
        pass  # it exited meanwhile
    finally:
        memory.close()


def forget_gone() -> None:
    """The holders' files of processes that exited since (their hooks went with them)."""
    try:
        names = os.listdir(HOOKS)
    except OSError:
        return
    for name in names:
        key = name.removesuffix(".lock")
        pid, _, started = key.partition("-")
        if pid.isdigit() and started.isdigit() and not _alive(int(pid), int(started)):
            path = os.path.join(HOOKS, name)
            try:
                if name.endswith(".lock"):
                    os.unlink(path)
                else:
                    for holder in os.listdir(path):
                        os.unlink(os.path.join(path, holder))
                    os.rmdir(path)
            except OSError:
                continue


def guard(arguments: list[str]) -> int:
    """The guardian of one tracer (arguments: its PID and start time): told of each process
    whose hook the tracer holds, it waits for the tracer (its stdin closes when the tracer is
    gone), then, unless told the tracer let go, lets go of each in its place. Signals that end a
    terminal's jobs are not its."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)
    holder = (int(arguments[0]), int(arguments[1]))
    told = b""
    while chunk := os.read(0, 65536):
        told += chunk
    lines = told.split(b"\n")
    if RELEASED in lines:
        return 0
    for line in lines:
        words = line.split()
        if len(words) == 8 and words[0] == HOOK and all(word.isdigit() for word in words[1:]):
            release_hook(Target(*(int(word) for word in words[1:])), holder)
    return 0


if __name__ == "__main__":
    sys.exit(guard(sys.argv[1:]))
