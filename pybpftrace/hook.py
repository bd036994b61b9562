"""Setting a running interpreter's eval_frame hook (PEP 523) for the eval-frame route, and
setting it back, however the tracer ends.

The only write pybpftrace makes into a target: `interp->eval_frame = _PyEval_EvalFrameDefault`
in each of its interpreters, through /proc/PID/mem, so that CPython 3.11+ evaluates every call
through the function the route probes (the interpreter itself is unchanged: it calls what it
would have called, through the pointer). Only over NULL: an evaluator already there is another
tool's (a perf trampoline, a debugger, torch's dynamo), and the trace is refused. Written back
to NULL when the last pybpftrace that set it is done: the tracers that hold a process's hook
are files in a directory of its own (/run/pybpftrace/eval-hooks), changed under a lock, so
that two traces of one process share it. A small guardian process (guardian.py), in a session
of its own, outlives each tracer: when the tracer is gone without having let go (SIGKILL, a
crash), it lets go in its place. A child forked while the hook is set inherits it: the kernel
tells of each fork of a hooked process (frame_events.h), and the child's hook is held and set
back with its parent's."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from .errors import HookRefused, NotFound, TraceError
from .eval_frame import INTERP_JIT, INTERP_RECURSION_LIMIT, INTERP_REMOTE_DEBUG
from .guardian import (
    RELEASED,
    Memory,
    Refused,
    Target,
    hold_hook,
    interpreters,
    release_hook,
    set_hook,
    start_time,
)
from .sampling import WalkedBinary, load_bias
from .target import EVAL_FRAME, describe_process

JIT_ENVIRONMENT = b"PYTHON_JIT"


def target_of(pid: int, walked: WalkedBinary) -> Target:
    binary, layout = walked.binary, walked.interpreter.layout
    bias = load_bias(pid, walked)
    started = start_time(pid)
    if bias is None or started is None:
        raise NotFound(f"{describe_process(pid)} exited, or no longer maps {binary.shown_path}")
    place = binary.places.get(EVAL_FRAME)
    if binary.eval_frame_field is None or place is None:
        raise TraceError(f"{binary.describe()}: where it keeps eval_frame is not known (x86-64 only)")
    return Target(pid, started, walked.interpreter.runtime + bias, place.function + bias, binary.eval_frame_field,
                  layout.runtime_interpreters, layout.interp_next)


def refusal(pid: int, walked: WalkedBinary) -> Optional[str]:
    """Why the hook would not make the route exact in this process, or None."""
    version = walked.interpreter.version[:2]
    target = target_of(pid, walked)
    memory = Memory(pid)
    try:
        main = next(interpreters(memory, target), 0)
        if not main:
            return None  # not initialized yet: nothing to refuse
        if version in INTERP_JIT and memory.byte(main + INTERP_JIT[version]):
            return ("its JIT is on (PYTHON_JIT=1), and JIT-compiled code calls no evaluator: trace it without "
                    "the JIT")
        if version in INTERP_REMOTE_DEBUG and memory.int32(main + INTERP_REMOTE_DEBUG[version]) == 0:
            return ("it opted out of remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug), "
                    "and pybpftrace does not write into such a process")
        for interp in interpreters(memory, target):
            current = memory.pointer(interp + target.field)
            if current not in (0, target.evaluator):
                return (f"its eval_frame hook is another tool's evaluator ({current:#x}: a perf trampoline, a "
                        "debugger or a JIT such as torch's dynamo), which pybpftrace never replaces")
    finally:
        memory.close()
    if version == (3, 13) and _jit_build(walked) and b"PYTHON_JIT=0" not in _environment(pid):
        return "it may run CPython 3.13's experimental JIT, whose compiled code calls no evaluator (PYTHON_JIT=0)"
    return None


def recursion_limit(pid: int, walked: WalkedBinary) -> Optional[int]:
    """The main interpreter's recursion limit (sys.getrecursionlimit()), where it is known."""
    offset = INTERP_RECURSION_LIMIT.get(walked.interpreter.version[:2])
    if offset is None:
        return None
    target = target_of(pid, walked)
    try:
        memory = Memory(pid)
    except OSError:
        return None
    try:
        main = next(interpreters(memory, target), 0)
        return memory.int32(main + offset) if main else None
    except OSError:
        return None
    finally:
        memory.close()


def _jit_build(walked: WalkedBinary) -> bool:
    with open(walked.binary.path, "rb") as binary:
        return JIT_ENVIRONMENT in binary.read()


def _environment(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return environ.read(1 << 20)
    except OSError:
        return b""


class Hooks:
    """The hooks a trace holds: those it set, and those its targets' children inherited (a
    process forked while its hook is set has it too, with the memory), and the guardian that
    sets them back should the tracer end without doing so."""

    def __init__(self) -> None:
        self._holder = (os.getpid(), start_time(os.getpid()))
        self._held: list[Target] = []
        self._guardian: Optional[subprocess.Popen] = None
        self._tell = -1

    def set(self, pid: int, walked: WalkedBinary) -> Target:
        """The guardian told first: from the moment the hook is set, someone will set it back."""
        target = target_of(pid, walked)
        self._guard(target)
        try:
            set_hook(target, self._holder)
        except Refused as refused:
            release_hook(target, self._holder)
            raise HookRefused(f"PID {pid}: its eval_frame hook is another tool's evaluator ({refused}), "
                              "which pybpftrace never replaces") from None
        except OSError as error:
            release_hook(target, self._holder)
            raise NotFound(f"PID {pid}: its memory cannot be written ({error.strerror or error})") from None
        return target

    def adopt(self, parent: Target, child: int) -> Optional[Target]:
        """A child `parent` forked, with the hook it inherited: held (and set back) too. None
        where it has exited already, or has no hook of ours."""
        started = start_time(child)
        if started is None:
            return None
        target = parent.forked(child, started)
        self._guard(target)
        try:
            return target if hold_hook(target, self._holder) else None
        except OSError:
            return None  # gone meanwhile

    def _guard(self, target: Target) -> None:
        if self._guardian is None:
            read, self._tell = os.pipe2(os.O_CLOEXEC)
            self._guardian = subprocess.Popen(
                [sys.executable, "-m", "pybpftrace.guardian", *map(str, self._holder)],
                stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            os.close(read)
        os.write(self._tell, target.line())
        self._held.append(target)

    def release(self) -> None:
        """Each hook set back (where no other tracer holds it), in the order held (a parent's
        before its children's: a child forked meanwhile inherits it no more), and the guardian
        let go."""
        for target in self._held:
            release_hook(target, self._holder)
        self._held.clear()
        if self._tell >= 0:
            os.write(self._tell, RELEASED + b"\n")
            os.close(self._tell)
            self._tell = -1
        if self._guardian is not None:
            self._guardian.wait()
            self._guardian = None
