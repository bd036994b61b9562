"""How the commands that follow calls (stack, calls, top's counts) see them in each process:

- the USDT route: CPython's function__entry and function__return probes (a --with-dtrace build,
  3.6 to 3.11 and 3.15). Nothing is written into the target: the default where they exist.
- the eval-frame route: a uprobe and a uretprobe on _PyEval_EvalFrameDefault, which every call
  goes through on 3.7 to 3.10, and from 3.11 once the interpreter's eval_frame hook is set
  (hook.py): by PID only with --eval-hook, for a command launched from its first call. Any
  build, probes or not.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import BadUsage, HookRefused, NoProbes, NotPython, TraceError, Unsupported
from .escaping import shown
from .eval_frame import EVAL_FRAME_ROUTE as EVAL_FRAME, USDT, eval_place, needs_hook, recursion_warning
from .guardian import Target
from .hook import Hooks, recursion_limit, refusal
from .sampling import WalkedBinary, py_process, walked_binary
from .target import (
    Launched,
    PythonBinary,
    TargetOptions,
    Targets,
    check_process,
    command_binaries,
    exit_code,
    find_targets,
    process_binaries,
    without_probes,
)
from .tools import NEEDED_PROBES
from .versions import PROBE_HISTORY

FUNCTION_PROBES = ("function__entry", "function__return")
HOOK_WRITES = ("to follow its calls pybpftrace must set the interpreter's eval_frame hook (one pointer in each "
               "interpreter, set back when tracing ends, however it ends), which --eval-hook allows")
PROFILE_WRITES_NOTHING = "pybpftrace profile samples where the time goes and writes nothing"


@dataclass
class CallTargets:
    """The processes to follow, each with its interpreter, and how."""

    targets: Targets
    walked: dict[int, WalkedBinary]
    eval_frame: set[PythonBinary] = field(default_factory=set)  # binaries followed by the eval-frame route
    hooked: list[int] = field(default_factory=list)  # processes whose hook is set once attached
    hook_at_launch: bool = False  # the launched command's hook is set at its first call

    @property
    def hooks(self) -> bool:
        """Whether a hook is set: then the forks of hooked processes are told (HOOK_FORKS)."""
        return bool(self.hooked) or self.hook_at_launch


def route_of(binary: PythonBinary, asked: Optional[str]) -> str:
    """The route a binary is followed by: the one asked, or USDT where it has function probes,
    else eval-frame; NoProbes says why neither can be."""
    usdt = binary.has(FUNCTION_PROBES)
    evaluator = eval_place(binary) is not None and (not needs_hook(binary.version) or
                                                    binary.eval_frame_field is not None)
    if asked == USDT and not usdt:
        raise NoProbes(_no_function_probes(binary) + "; without --route usdt, pybpftrace follows calls through its "
                       "evaluator (the eval-frame route)")
    if asked == EVAL_FRAME and not evaluator:
        raise NoProbes(f"{binary.describe()}: its evaluator (_PyEval_EvalFrameDefault) cannot be probed (x86-64 only, "
                       "and only where the binary exports it)")
    if asked:
        return asked
    if usdt:
        return USDT
    if evaluator:
        return EVAL_FRAME
    raise NoProbes(_no_function_probes(binary) + f", and its evaluator cannot be probed (x86-64 only); "
                   f"{PROFILE_WRITES_NOTHING}")


def _no_function_probes(binary: PythonBinary) -> str:
    if not binary.probes.names():
        return without_probes(binary)
    return f"{binary.describe()} has no function probes ({PROBE_HISTORY['function__entry']})"


def _interpreter(binaries: list[PythonBinary], where: str) -> PythonBinary:
    found = [binary for binary in binaries if binary.interpreter]
    if not found:
        raise NotPython(f"{where} is not a Python: it holds no CPython interpreter")
    return found[0]


def find_call_targets(options: TargetOptions, command: str, asked: Optional[str], eval_hook: bool) -> CallTargets:
    """The processes a call-following command traces (or the command to launch), each by its
    route; NoProbes or HookRefused say why one cannot be."""
    if options.binaries or options.all_pythons:
        if asked == EVAL_FRAME or eval_hook:
            raise BadUsage("the eval-frame route follows PIDs and launched commands: --binary and --all take the "
                           "function probes")
        return CallTargets(find_targets(options, command, NEEDED_PROBES), {})
    if options.argv:
        name, binaries = command_binaries(options.argv)
        binary = _interpreter(binaries, name)
        walked = walked_binary(binary)  # Unsupported says why its frames cannot be read
        route = route_of(binary, asked)
        launched = Launched(options.argv)
        calls = CallTargets(Targets({launched.pid: [binary]}, launched), {launched.pid: walked})
        if route == EVAL_FRAME:
            calls.eval_frame.add(binary)
            calls.hook_at_launch = needs_hook(binary.version)
        return calls
    found, walked, calls = {}, {}, CallTargets(Targets({}), {})
    for pid in options.pids:
        check_process(pid)
        binary = _interpreter(process_binaries(pid), f"PID {pid}")
        walked[pid] = walked_binary(binary)
        route = route_of(binary, asked)
        found[pid] = [binary]
        if route != EVAL_FRAME:
            continue
        calls.eval_frame.add(binary)
        if not needs_hook(binary.version):
            continue
        if not eval_hook:
            said = (_no_function_probes(binary) if not binary.has(FUNCTION_PROBES) else
                    f"{binary.describe()}, by the eval-frame route")
            raise NoProbes(f"{said}; {HOOK_WRITES}; {PROFILE_WRITES_NOTHING}")
        why = refusal(pid, walked[pid])
        if why:
            raise HookRefused(f"PID {pid} ({binary.describe()}): {why}")
        calls.hooked.append(pid)
    calls.targets = Targets(found)
    calls.walked = walked
    return calls


LAUNCH_HOOK_POLL = 0.001  # seconds between looks at whether a launched command reached its first call
SIGSTOP_WAIT_SECONDS = 60.0  # how long a launched command may take to run its first Python call


class CallRoutes:
    """What a trace of calls does besides loading its program: each binary's layout, for the
    kernel to register its processes by at their first hit; the eval-frame route's hooks, set
    once its probes are in place (a launched command's at its first call, which the kernel
    stops it at) and set back when tracing ends."""

    def __init__(self, calls: CallTargets):
        self.calls = calls
        self._hooks = Hooks()
        self._hooked: dict[int, Target] = {}  # the processes whose hook is held, their children too
        self._program = None

    @property
    def eval_frame(self) -> frozenset[PythonBinary]:
        return frozenset(self.calls.eval_frame)

    def prepare(self, program, binaries: list[PythonBinary]) -> list[str]:
        """Fill binary_layouts; say (in the lines returned) which binaries' calls cannot be
        followed, their frames unreadable."""
        unreadable = []
        self._program = program
        if not program.has_table("binary_layouts"):  # a program that registers no process itself
            return unreadable
        table = program.table("binary_layouts")
        for index, binary in enumerate(binaries):
            try:
                walked = walked_binary(binary)
            except Unsupported as error:
                unreadable.append(f"not following the calls of {binary.describe()}: {error}")
                continue
            table[table.Key(index)] = py_process(table.Leaf(), walked.interpreter, 0)
        launched = self.calls.targets.launched
        if launched and self.calls.hook_at_launch:
            pending = program.table("hooks_pending")
            pending[pending.Key(launched.pid)] = pending.Leaf(1)
        return unreadable

    def hook_processes(self) -> None:
        """Set the hook of each process traced by PID that needs it."""
        for pid in self.calls.hooked:
            self._hook(pid)

    def _hook(self, pid: int) -> None:
        walked = self.calls.walked[pid]
        hooked = self._program.table("hooked")
        hooked[hooked.Key(pid)] = hooked.Leaf(1)  # before it is set: its forks from then on are told
        self._hooked[pid] = self._hooks.set(pid, walked)
        warning = recursion_warning(walked.interpreter.version, recursion_limit(pid, walked))
        if warning:
            print(f"pybpftrace: warning: PID {pid}: {shown(warning)}", file=sys.stderr, flush=True)

    def launched(self, launched: Launched, stopping: Callable[[], bool]) -> None:
        """A launched command let go: the kernel stops it at its first Python call (its first
        hit of the evaluator); its hook is set then, and it goes on."""
        if not self.calls.hook_at_launch:
            return
        deadline = time.monotonic() + SIGSTOP_WAIT_SECONDS
        while not stopping():
            pid, status = os.waitpid(launched.pid, os.WUNTRACED | os.WNOHANG)
            if pid == 0:
                if time.monotonic() > deadline:
                    raise TraceError(f"{launched.argv[0]} ran no Python call within {SIGSTOP_WAIT_SECONDS:.0f} s")
                time.sleep(LAUNCH_HOOK_POLL)
                continue
            if not os.WIFSTOPPED(status):  # it ended before its first call
                launched.status = exit_code(status)
                return
            try:
                self._hook(launched.pid)
            finally:
                os.kill(launched.pid, signal.SIGCONT)
            return

    def forked(self, forks: list[tuple[int, int]]) -> None:
        """Children that hooked processes forked (parent, child): they inherited the hook, which
        is held and set back with the parent's."""
        for parent, child in forks:
            target = self._hooked.get(parent)
            adopted = self._hooks.adopt(target, child) if target else None
            if adopted:
                self._hooked[child] = adopted

    def release(self, told_forks: Callable[[], list[tuple[int, int]]] = lambda: []) -> None:
        """Every hook set back (where no other tracer holds it): the parents' first, then those
        of the children they forked meanwhile, told since (told_forks: the forks the kernel told
        of that are not read yet)."""
        self.forked(told_forks())
        self._hooks.release()
        while forks := told_forks():
            self.forked(forks)
            self._hooks.release()
