"""Every thread's stack as the thread really had it, read without pausing the process.

The dump iterator (bpf/dump.h) reads a thread's frames from another CPU. A thread that sleeps
meanwhile keeps its stack, and what is read is exact. A thread that runs pushes and pops frames
while they are read: its frame chain then mixes moments, and a frame freed and reused meanwhile
would show code that was never there. So each thread's activity is looked at before and after
the walk (/proc: running, and its context switches), and a thread that may have run is read again
in its own context: at one tick of its own CPU clock, aimed at it (a task-clock perf event bound
to that thread, bpf/dump.bpf.c's `aimed`), where it is interrupted while its stack is read, as
`profile` reads stacks. A thread that gets no tick (it went to sleep first) is read again by the
iterator, now that it sleeps. One that never settles keeps the iterator's reading, marked as
changing (SAMPLE_CHANGED): never an invented frame shown as a real one."""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from .events import SAMPLE_CHANGED, SAMPLE_CPU, SAMPLE_DUMP, SAMPLE_HOLDS_GIL
from .samples import Sample, unpack
from .sampling import PERF_TYPE_SOFTWARE, DumpRun, Walker
from .target import thread_file, thread_ids, thread_stat

PERF_COUNT_SW_TASK_CLOCK = 1  # the thread's own CPU time
AIM_PERIOD_NS = 50_000  # a thread is ticked after this much of its CPU time
TICK_WAIT = 0.25  # s: a running thread's tick comes within this (else it stopped running)
ROUNDS = 3  # iterator walks, at most, of a thread that will not settle


@dataclass(frozen=True)
class Activity:
    """What /proc says of a thread at one moment."""

    running: bool  # runnable or on a CPU
    switches: int  # its context switches so far


def activity(pid: int) -> dict[int, Activity]:
    """Each thread of pid, now."""
    found = {}
    for tid in thread_ids(pid):
        fields, status = thread_stat(pid, tid), thread_file(pid, tid, "status")
        if not fields or not status:
            continue
        switches = sum(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))
        found[tid] = Activity(fields[0] == "R", switches)
    return found


def ran_between(before: dict[int, Activity], after: dict[int, Activity]) -> set[int]:
    """The threads that may have run between two looks: running at either, switched in between,
    or not there at both."""
    return {tid for tid in before.keys() | after.keys()
            if tid not in before or tid not in after or before[tid].running or after[tid].running
            or before[tid].switches != after[tid].switches}


class AimedTicks:
    """Ticks aimed at threads of a loaded dump program (bpf/dump.bpf.c): each aimed thread's
    next tick of its own CPU clock walks its stack (dump.bpf.c's on_tick) and sends it."""

    def __init__(self, program):
        from bcc.libbcc import lib

        self._lib = lib
        self._program = program
        self._function = program.function_fd("on_tick", "perf_event")
        self._events: list[int] = []

    def aim(self, tids: Iterable[int]) -> None:
        aimed = self._program.table("aimed")
        for tid in tids:
            aimed[aimed.Key(tid)] = aimed.Leaf(1)
            fd = self._lib.bpf_attach_perf_event(
                self._function, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK, ctypes.c_ulonglong(AIM_PERIOD_NS),
                ctypes.c_ulonglong(0), tid, -1, -1)
            if fd >= 0:
                self._events.append(fd)
            # else: the thread is gone (or the kernel refused): it gets no tick, and is read again

    def close(self) -> None:
        for fd in self._events:
            self._lib.bpf_close_perf_event_fd(fd)
        self._events.clear()
        aimed = self._program.table("aimed")
        aimed.clear()


def _with_tick(read: Sample, tick: Sample) -> Sample:
    """The iterator's reading of a thread, its frames replaced by those its tick read."""
    read.frames = tick.frames
    read.flags = tick.flags | (read.flags & SAMPLE_HOLDS_GIL)
    read.timestamp = tick.timestamp
    return read


@dataclass
class SettledStacks:
    stacks: list[Sample]  # each thread's, in the order of the interpreter's list
    run: DumpRun  # what the first walk met
    seconds: float  # the walks' and the ticks' time, added up


Key = tuple[int, int]  # a thread's (pthread id, host TID)


def settled_stacks(walker: Walker, program, pid: int, drain: Callable[[], list[bytes]],
                   hosts: dict[int, int]) -> SettledStacks:
    """Every thread's stack of pid, each one it really had (see the module's text). drain takes
    the records sent since it last did (and the code objects, wherever they go); hosts maps
    the TIDs CPython keeps to the host's, where the process has its own PID namespace."""
    ticks = AimedTicks(program)
    seconds = 0.0
    try:
        stacks, run, unsettled = _walk(walker, pid, drain, hosts, None)
        seconds += run.seconds
        for round_ in range(ROUNDS):
            started = time.monotonic()
            got = _ticks(ticks, {key[1] for key in unsettled if key[1]}, drain)
            seconds += time.monotonic() - started
            for key in [key for key in unsettled if key[1] in got]:
                _with_tick(stacks[key], got[key[1]])
                unsettled.discard(key)
            if not unsettled or round_ == ROUNDS - 1:
                break
            again, again_run, still = _walk(walker, pid, drain, hosts, unsettled)
            seconds += again_run.seconds
            for key in unsettled - still:
                if key in again:
                    stacks[key] = again[key]
            unsettled &= still
        for key in unsettled:
            stacks[key].flags |= SAMPLE_CHANGED
    finally:
        ticks.close()
    return SettledStacks(list(stacks.values()), run, seconds)


def _walk(walker: Walker, pid: int, drain: Callable[[], list[bytes]], hosts: dict[int, int],
          wanted: Optional[set[Key]]) -> tuple[dict[Key, Sample], DumpRun, set[Key]]:
    """One iterator walk: the stacks read (of the wanted threads), what the walk met, and the
    threads among them that may have run while it went."""
    records: list[bytes] = []
    before = activity(pid)
    run = walker.walk_every_thread(pid, lambda: records.extend(drain()))
    moved = ran_between(before, activity(pid))
    stacks: dict[Key, Sample] = {}
    for sample in map(unpack, records):
        if sample.kind != SAMPLE_DUMP:
            continue
        if hosts:
            sample.tid = hosts.get(sample.tid, 0)
        key = (sample.thread_id, sample.tid)
        if wanted is None or key in wanted:
            stacks.setdefault(key, sample)  # a looping list's threads: each once
    return stacks, run, {key for key in stacks if key[1] in moved}


def _ticks(ticks: AimedTicks, tids: set[int], drain: Callable[[], list[bytes]]) -> dict[int, Sample]:
    """The stacks the threads' aimed ticks read, of those that ticked within TICK_WAIT."""
    got: dict[int, Sample] = {}
    if not tids:
        return got
    ticks.aim(tids)
    deadline = time.monotonic() + TICK_WAIT
    try:
        while len(got) < len(tids) and time.monotonic() < deadline:
            time.sleep(0.001)
            _take_ticks(drain(), tids, got)
    finally:
        ticks.close()
    _take_ticks(drain(), tids, got)  # a tick that came as the events closed
    return got


def _take_ticks(records: list[bytes], tids: set[int], got: dict[int, Sample]) -> None:
    for sample in map(unpack, records):
        if sample.kind == SAMPLE_CPU and sample.tid in tids:
            got.setdefault(sample.tid, sample)
