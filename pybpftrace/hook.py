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
crash), it lets go in its place."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from .errors import NotFound, TraceError
from .eval_frame import INTERP_JIT, INTERP_RECURSION_LIMIT, INTERP_REMOTE_DEBUG
from .guardian import RELEASED, Memory, Refused, Target, interpreters, release_hook, set_hook, start_time
from .sampling import WalkedBinary, load_bias
from .target import EVAL_FRAME, describe_process

JIT_ENVIRONMENT = b"PYTHON_JIT"


class HookRefused(TraceError):
    """The eval-frame route cannot be exact in this process (its evaluator is another tool's,
    its JIT is on, it opted out of remote debugging)."""

    exit_code = 10


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


class EvalHook:
    """The hook a trace set in one process, and its guardian."""

    def __init__(self, pid: int, walked: WalkedBinary):
        self.target = target_of(pid, walked)
        self._holder = (os.getpid(), start_time(os.getpid()))
        self._guardian: Optional[subprocess.Popen] = None
        self._tell = -1

    def set(self) -> None:
        """The guardian first: from the moment the hook is set, someone will set it back."""
        read, self._tell = os.pipe2(os.O_CLOEXEC)
        self._guardian = subprocess.Popen(
            [sys.executable, "-m", "pybpftrace.guardian", *self.target.arguments(), *map(str, self._holder)],
            stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(read)
        try:
            set_hook(self.target, self._holder)
        except Refused as refused:
            self.release()
            raise HookRefused(f"PID {self.target.pid}: its eval_frame hook is another tool's evaluator ({refused}), "
                              "which pybpftrace never replaces") from None
        except OSError as error:
            self.release()
            raise NotFound(f"PID {self.target.pid}: its memory cannot be written ({error.strerror or error})") from None

    def release(self) -> None:
        """Set it back (if no other tracer holds it), and let the guardian go."""
        release_hook(self.target, self._holder)
        if self._tell >= 0:
            os.write(self._tell, RELEASED)
            os.close(self._tell)
            self._tell = -1
        if self._guardian is not None:
            self._guardian.wait()
            self._guardian = None
