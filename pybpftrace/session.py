"""One trace from start to end: targets resolved, program compiled and attached, ring buffers
drained until a stop condition, then everything detached and the summary line written.

The Session holds the stages together; each lives in its own module: the program and its
defines (program.py), its rings and their drain order (rings.py), its uprobes in each process
(attach.py), the frame walker's registrations and clock (sampling.py), the stopping signals
(signals.py), the processes that exit (exits.py) and the threads' names (thread_names.py)."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import shlex
import signal
import struct
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from .attach import AttachError, Attachment
from .consumer import Consumer, Summary
from .errors import KernelSetup, NoProbes, NotFound, NotPython, NotPermitted, OutputFailed, TraceError
from .escaping import shown
from .events import COUNTER_EVENTS, COUNTER_EVENTS_LOST, COUNTER_NAMES_LOST, COUNTER_NO_MEMORY, \
    COUNTER_PROCESSES_FULL, PROCESS_FORKED
from .exits import Exits
from .namespaces import tell_kernel
from .formats.model import Meta
from .program import LoadedProgram, Loss, ProgramSpec, generate
from .progress import FoundLines, Progress, wanted
from .rings import CODES_PAGES, NAMES_PAGES, SessionRings, pages_for
from .routes import EVAL_FRAME, CallRoutes, CallTargets, find_call_targets
from .sampling import Sampling, Selection, WalkedBinary, Walker, find_walked_targets, walked_for
from .signals import StopSignals
from .target import SYSTEM_WIDE, TargetOptions, Targets, find_targets
from .tracers import TRACERS_MAX, OtherTracers
from .thread_names import ThreadLabels, thread_states_by_tid
from .tools import NEEDED_PROBES

__all__ = ["Consumer", "Summary", "Session", "TraceOptions", "run_tool", "signed_total"]

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
DEFAULT_BUFFER_MIB = 16
MAX_BUFFER_MIB = 1024  # the kernel takes a ring buffer of up to 4 GiB; more than this is a typo
# A batch smaller than this is followed by a short pause, so events arrive in batches.
SMALL_BATCH = 512
COALESCE_SECONDS = 0.01
REGISTER_POLL_NS = 1_000_000  # how often to look whether a launched command mapped its interpreter
SWEEP_SECONDS = 1.0  # how often the processes that exited are looked for

# The kernel's maps whose size bounds what can be kept, and their sizes (entries): each is
# passed to the programs as NAME_MAX. Not preallocated unless said, they take memory for what
# they hold.
# PYBPFTRACE_MAP_SIZES="nodes=1000,threads=64" sets others (to see a map fill, in the tests).
MAP_SIZES = {
    "thread_frames": 65536,  # frames.h: a shadow stack per live thread (stack, calls, top's counts)
    "nodes": 1 << 20,  # folded.bpf.c: call paths
    "lost_paths": 16384,  # folded.bpf.c: calls under paths that could not be kept (preallocated)
    "roots": 131072,  # folded.bpf.c: a root per thread, and per frame it was in when first seen
    "ended_frames": 16384,  # folded.bpf.c: stacks of threads that exited with calls open
    "functions": 262144,  # calls.bpf.c: functions of live processes
    "spilled_functions": 1024,  # calls.bpf.c: functions the kernel had no memory for (preallocated)
    "counts": 131072,  # common.h: top's and lines' counts (preallocated)
    "known_names": 65536,  # common.h: names announced (an LRU: an entry evicted is announced again)
    "incarnations": 65536,  # lifetimes.h: live processes
    "off_cpu": 65536,  # profile.bpf.c: the wait state of each traced thread (--idle, --off-cpu, --wall)
    "py_processes": 8192,  # pystacks.h: the processes whose stacks are read, and where their interpreter is
}
MAP_SIZES_VARIABLE = "PYBPFTRACE_MAP_SIZES"

# What every program can fail to keep, worded for the summary line ({n}: how many; {NAME}:
# the size of map NAME); each tool's ProgramSpec.losses adds its own.
COMMON_LOSSES = (
    Loss(COUNTER_EVENTS_LOST, "{n} events dropped: the events ring buffer was full (--buffer-size makes it larger)",
         dropped=True),
    Loss(COUNTER_NAMES_LOST, "{n} names not sent when first seen: the names ring buffer was full"),
    Loss(COUNTER_PROCESSES_FULL, "{n} events of processes beyond {incarnations} live ones: the incarnations map was "
         "full (their names may mix with a later process's of the same PID)"),
    Loss(COUNTER_NO_MEMORY, "{n} map entries the kernel could not allocate: it was out of memory"),
)


def require_privileges(what: str) -> None:
    """Tracing needs CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON: root, in practice."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("CapEff:"))
    caps = int(line.split()[1], 16)
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return
    raise NotPermitted(f"{what} needs root (CAP_BPF and CAP_PERFMON): run it with sudo")


def signed_total(per_cpu) -> int:
    """A count kept per CPU, summed. A count taken back on another CPU than the one that
    counted it leaves that CPU's share below 0, stored wrapped as an unsigned 64-bit value."""
    return ctypes.c_int64(sum(per_cpu)).value


def map_sizes() -> dict[str, int]:
    """MAP_SIZES, with those $PYBPFTRACE_MAP_SIZES sets."""
    sizes = dict(MAP_SIZES)
    for item in filter(None, os.environ.get(MAP_SIZES_VARIABLE, "").split(",")):
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit() or int(value) < 1:
            raise TraceError(f"${MAP_SIZES_VARIABLE}: {item!r} is not MAP=ENTRIES with MAP one of {', '.join(sizes)}")
        sizes[name] = int(value)
    return sizes


class _Processes:
    """The traced processes still alive, each watched through a pidfd in the poller."""

    def __init__(self, poller: select.epoll):
        self._poller = poller
        self._pidfds: dict[int, int] = {}
        self.seen = 0

    def add(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        self._pidfds[fd] = pid
        self._poller.register(fd, select.EPOLLIN)
        self.seen += 1

    def exited(self, fd: int) -> bool:
        """Whether fd was a process's and it has exited (then it is forgotten)."""
        if fd not in self._pidfds:
            return False
        del self._pidfds[fd]
        self._poller.unregister(fd)
        os.close(fd)
        return True

    def __bool__(self) -> bool:
        return bool(self._pidfds)

    def close(self) -> None:
        for fd in self._pidfds:
            os.close(fd)
        self._pidfds.clear()


@dataclass
class Session:
    spec: ProgramSpec
    targets: Targets
    ring: Optional[str]  # the program's event ring buffer, if it has one
    layout: Optional[struct.Struct]  # the one record layout it carries; None: records of any length
    buffer_mib: float = DEFAULT_BUFFER_MIB
    follow_forks: bool = False
    defines: dict[str, int] = field(default_factory=dict)
    walked: dict[int, WalkedBinary] = field(default_factory=dict)  # processes whose stacks are read
    sampling: Sampling = field(default_factory=Sampling)
    selection: Optional[Selection] = None  # with --binary or --all: those read as they come
    calls: Optional[CallRoutes] = None  # a program that follows calls: by which route, in each binary

    def __post_init__(self) -> None:
        self.start = self.stopped = 0  # on the monotonic clock, in ns
        self.started = 0  # the wall clock at start, ns since the epoch
        self.output_failure: Optional[OutputFailed] = None
        self.signals = StopSignals()
        self.map_sizes = map_sizes()
        pages = pages_for(self.buffer_mib)
        defines = self._defines(pages)
        binaries = [b for group in self.targets.binaries.values() for b in group]
        generated = generate(self.spec, binaries, self.calls.eval_frame if self.calls else frozenset())
        self.program = LoadedProgram(generated, defines)
        self.notes = (self.targets.notes + generated.skipped
                      + (self.calls.prepare(self.program, generated.binaries) if self.calls else []))
        tracks = (self.spec.walker and (self.selection is not None or self.follow_forks or self.targets.launched)
                  and self.program.has_table("process_events"))  # a program that follows calls registers its own
        stacks = self.spec.walker and self.ring != "samples" and self.program.has_table("samples")
        self.rings = SessionRings(self.program, self.ring, self.layout, pages, codes=self.spec.walker, stacks=stacks,
                                  forks="FOLLOW_FORKS" in defines, processes=tracks,
                                  hook_forks="HOOK_FORKS" in defines)
        self.exits = Exits(self.program, self.rings, self.spec.follows_calls)
        self.walker = (
            Walker(self.program, self.spec.continuations, self.sampling.linetables, self.sampling.qualnames)
            if self.spec.walker else None
        )
        self.threads = ThreadLabels(lambda pid: self.walker.registered.get(pid) if self.walker else None)
        self._attachment = Attachment(self.program, self.follow_forks)
        self.other_tracers = (OtherTracers(self.program, frozenset(self.targets.pids),
                                           self.walker.leave_out if self.walker else lambda pids: [])
                              if self.finds_pythons else None)

    @property
    def finds_pythons(self) -> bool:
        """It finds the Pythons it traces itself (--all, --binary, --subprocesses, a launched
        command's): other pybpftrace tracers among them are left out (tracers.py)."""
        return self.selection is not None or SYSTEM_WIDE in self.targets.binaries

    def _defines(self, pages: int) -> dict[str, int]:
        """The constants the program is compiled with: ring and map sizes, what it does."""
        sizes = {f"{name.upper()}_MAX": size for name, size in self.map_sizes.items()}
        defines = {"EVENTS_PAGES": pages, "NAMES_PAGES": NAMES_PAGES, "TRACER_PID": os.getpid(), **sizes,
                   **self.defines}
        ensure_tracefs()  # the exit tracepoint (lifetimes.h), and the walker's
        if exit_has_group_dead():
            defines["EXIT_GROUP_DEAD"] = 1
        if self.spec.walker:
            defines["CODES_PAGES"] = CODES_PAGES
            defines["WALKS_STACKS"] = 1
            if self.sampling.off_cpu:
                defines["OFF_CPU"] = 1
            if self.sampling.gil_only:
                defines["GIL_ONLY"] = 1
            if self.sampling.async_tasks:
                defines["ASYNC_TASKS"] = 1
            if self.layout:  # events of their own, with the stacks they fire in
                defines["STACKS"] = 1
        if self.calls and self.calls.calls.hooks:
            defines["HOOK_FORKS"] = 1
        if self.finds_pythons:
            defines["LEAVES_OUT_TRACERS"] = 1
            defines["TRACERS_MAX"] = TRACERS_MAX
        # a walker alone follows forks in the kernel; uprobes are attached to each child
        if self.follow_forks and (not self.spec.walker or self.spec.follows_calls):
            defines["FOLLOW_FORKS"] = 1
        return defines

    # The names and code objects the kernel announced, and the stacks events fired in.
    @property
    def names(self):
        return self.rings.names

    @property
    def codes(self):
        return self.rings.codes

    @property
    def event_stacks(self) -> dict[tuple[int, int], bytes]:
        return self.rings.event_stacks

    def attach(self) -> None:
        """Attach to every target, then switch the programs on (announce() then says so and
        lets a launched command go: it is traced from its first instruction). The eval-frame
        route's uprobes go on once the programs are on (each call it sees has its return's
        probe: returns are matched by stack pointer, entries never need to be), and then the
        hooks that make every call go through them."""
        self._attach(lambda placement: placement.route != EVAL_FRAME)
        if self.other_tracers:
            self.other_tracers.sync()
        if self.walker:
            launched = self.targets.launched
            track_forks = (self.selection is not None or self.follow_forks) if self.rings.process_events else None
            self.walker.begin(self.walked, launched.pid if launched else None, self.selection, self.sampling,
                              track_forks)
        self._note_thread_names()
        self._cache_thread_states()
        self.start = time.monotonic_ns()
        self.started = time.time_ns()
        if self.calls and self.program.has_table("trace_settings"):  # when frames that began before began
            settings = self.program.table("trace_settings")
            settings[settings.Key(0)] = settings.Leaf(self.start)
        self._switch(True)
        if self.walker:
            self.walker.seed_tree()
        # From the moment the user is told tracing runs, Ctrl-C and SIGTERM end it cleanly.
        self.signals.catch()
        if self.calls:
            self._attach(lambda placement: placement.route == EVAL_FRAME, place=True)
            self.calls.hook_processes()

    def _attach(self, which: Callable, place: bool = False) -> None:
        """The placements `which` picks, in every target (place: only the uprobes)."""
        try:
            for pid, binaries in self.targets.binaries.items():
                if place:
                    self._attachment.place(pid, binaries, which=which)
                else:
                    self._attachment.attach(pid, binaries, which=which)
        except AttachError as error:
            if error.errno == errno.ESRCH:
                raise NotFound(f"the target exited while attaching ({error})") from None
            if error.errno == errno.EINVAL:
                raise TraceError(
                    f"the kernel refused a uprobe ({error}): most likely another tracer (bcc's "
                    "tools or bpftrace) probes the same place without its semaphore; stop it and retry"
                ) from None
            raise KernelSetup(f"cannot attach: {error}") from None

    def announce(self) -> None:
        """Tell the user tracing runs, and let a launched command go."""
        for note in self.notes:
            print(f"pybpftrace: {shown(note)}", file=sys.stderr)
        print(f"pybpftrace: tracing {shown(self.describe())}; Ctrl-C to stop", file=sys.stderr, flush=True)
        launched = self.targets.launched
        if launched:
            launched.release()
            if self.calls:
                self.calls.launched(launched, lambda: bool(self.signals.received))
            if self.walker and self.rings.process_events:
                self.walker.wait_launched(launched.pid, self.rings.process_events)

    def _cache_thread_states(self) -> None:
        """Each running thread's state, read here and put in the kernel's cache of them: the
        kernel searches the interpreter's list of them (newest first) 4096 deep at most, and a
        process may have more threads than that. Threads started later are found by the
        kernel, near the head of the list."""
        if not self.program.has_table("thread_states"):
            return
        launched = self.targets.launched
        walked = {**self.walked, **(self.calls.calls.walked if self.calls else {})}
        table = self.program.table("thread_states")
        for pid, binary in walked.items():
            if launched and pid == launched.pid:
                continue  # not yet running Python
            tell_kernel(self.program, pid)
            for tid, state in thread_states_by_tid(pid, binary).items():
                table[table.Key(tid)] = table.Leaf(state)

    def _note_thread_names(self) -> None:
        """Note each target's threads' names from before it is told tracing runs: a short-lived
        target may exit before the trace ends."""
        launched = self.targets.launched
        for pid in self.targets.pids:
            if not (launched and pid == launched.pid):  # held before exec: its name is still ours
                self.threads.note(pid)

    def thread_name(self, pid: int, tid: int) -> str:
        """A thread's name: once tracing has stopped, its Python name (Thread.name) where it
        still runs and threading knows it; else its OS name."""
        return self.threads.name(pid, tid)

    def os_thread_name(self, pid: int, tid: int) -> str:
        return self.threads.os_name(pid, tid)

    def _follow(self, parent: int, child: int) -> bool:
        """Attach to a child forked by a traced process."""
        binaries = self.targets.binaries.get(parent)
        if binaries is None:
            return False
        self.targets.binaries[child] = binaries
        tell_kernel(self.program, child)
        return self._attachment.follow(parent, child, binaries)

    def target(self) -> str:
        """What is traced, e.g. `PID 42 (CPython 3.11.2 at /usr/bin/python3.11)`."""
        parts = []
        for pid, binaries in self.targets.binaries.items():
            shown = binaries or ([self.walked[pid].binary] if pid in self.walked else [])
            if pid == SYSTEM_WIDE and self.selection:
                shown = self.selection.chosen
            what = ", ".join(binary.describe() for binary in shown)
            if pid == SYSTEM_WIDE and self.selection and self.selection.any_python:
                what = "any CPython whose stacks can be read" + (f" (functions counted in {what})" if what else "")
            if pid != SYSTEM_WIDE and not what and self.selection and pid in self.selection.roots:
                what = "no CPython"
            parts.append(f"every process running {what}" if pid == SYSTEM_WIDE else f"PID {pid} ({what})")
        forks = " and the processes they fork" if self.follow_forks else ""
        if self.selection and self.selection.roots:
            forks = " and the Pythons among their descendants, now and later"
        return f"{', '.join(parts)}{forks}"

    def describe(self) -> str:
        how = []
        if self._attachment:
            how.append(f"{len(self._attachment)} uprobes")
        if self.sampling.rate:
            how.append(f"{self.sampling.rate} samples a second")
        return f"{self.target()} with {' and '.join(how) or 'nothing attached'}"

    def meta(self, summary: Summary) -> Meta:
        """What was traced, for the headers of output files."""
        notes = [f"{summary.lost:,} events lost (the ring buffer was full)"] if summary.lost else []
        command = "pybpftrace " + shlex.join(sys.argv[1:])
        return Meta(command, self.target(), summary.seconds, self.started, notes)

    def _switch(self, on: bool) -> None:
        tracing = self.program.table("tracing")
        tracing[tracing.Key(0)] = tracing.Leaf(int(on))

    def counter(self, index: int) -> int:
        return signed_total(self.program.table("counters")[index])

    def losses(self) -> tuple[int, list[str]]:
        """Events dropped, and the summary's notes on what could not be kept."""
        dropped, notes = 0, []
        for loss in COMMON_LOSSES + self.spec.losses:
            n = self.counter(loss.counter)
            if n:
                dropped += n if loss.dropped else 0
                notes.append(loss.text.format(n=n, **self.map_sizes))
        if self.walker:
            notes += self.walker.notes(self.counter, self.map_sizes["py_processes"])
        skipped = self.program.skipped_runs()
        if skipped:
            notes.append(f"{skipped} events the kernel did not run pybpftrace's programs for (another BPF program "
                         "was running on that CPU): what they carried is missing")
        return dropped, notes

    def drain(self, consume: Callable[[list], None]) -> None:
        """Everything left on the rings, once tracing has stopped."""
        while self.rings.drain(consume):
            pass

    def run(self, consumer: Consumer, duration: Optional[float], progress: Optional[Progress] = None) -> Summary:
        """Drain events into the consumer until a signal, the duration, every traced
        process's exit, or its on_interval (called every consumer.interval seconds) saying it
        is done; with follow_forks, attach to each child as it is forked (on_fork hears of
        it); hand it each process that exits (on_exits)."""
        consume, interval = consumer.feed, consumer.interval
        copy = consumer.feed_copied if consumer.copies_records else None
        summary = Summary()
        poller = select.epoll()
        for ring in self.rings.pollable():
            poller.register(ring.fd, select.EPOLLIN)
        processes = _Processes(poller)
        found_lines = FoundLines()
        for pid in self.targets.pids:
            processes.add(pid)
        system_wide = SYSTEM_WIDE in self.targets.binaries
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        poller.register(wake_read, select.EPOLLIN)
        tracers_fd = self.other_tracers.fd if self.other_tracers else None
        if tracers_fd is not None:
            poller.register(tracers_fd, select.EPOLLIN)
        previous_wakeup = signal_wakeup(wake_write)
        deadline = self.start + int(duration * 1e9) if duration else None
        next_tick = self.start + int(interval * 1e9) if interval else None
        next_sweep = self.start + int(SWEEP_SECONDS * 1e9)
        stop: Optional[str] = None
        behind = False  # the consumer has work left from what it was fed
        try:
            while (processes or system_wide) and not stop:
                now = time.monotonic_ns()
                wake = min(filter(None, (deadline, next_tick)), default=now + 500_000_000)
                if self.walker and self.walker.waiting:  # a launched command maps its interpreter
                    self.walker.register_pending()
                    wake = min(wake, now + REGISTER_POLL_NS)
                timeout = 0.0 if behind or self.rings.pending() else max(0.0, min(0.5, (wake - now) / 1e9))
                for fd, _ in poller.poll(timeout):
                    if fd == wake_read:
                        os.read(wake_read, 64)
                    elif fd == tracers_fd:
                        self._leave_out_tracers(found_lines, progress, consumer)
                    else:
                        processes.exited(fd)
                self._hear_of_processes(processes)
                if self.walker and self.walker.found:
                    found = self.walker.take_found()
                    if not consumer.screen:
                        found_lines.tell(found, progress)
                try:
                    batch = self.rings.drain(consume, copy)
                    behind = consumer.catch_up()
                    now = time.monotonic_ns()
                    if progress:
                        progress.update(self.start, now)
                    if now >= next_sweep:
                        next_sweep = now + int(SWEEP_SECONDS * 1e9)
                        self.exits.sweep()
                        if self.walker:
                            self.walker.sweep(self.rings.producer_position(), self.rings.consumer_position())
                        if self.other_tracers:  # (and those gone without a word: killed)
                            self._leave_out_tracers(found_lines, progress, consumer)
                    self.exits.finish(consumer)
                    if next_tick is not None and now >= next_tick:
                        next_tick += int(interval * 1e9)
                        if consumer.on_interval():
                            stop = "done"
                except OutputFailed as failure:
                    consume = self._output_failed(failure)
                    copy = consume if copy else None
                    stop = "output closed" if failure.closed else "output failed"
                stop = stop or self.signals.received
                if stop or (deadline is not None and now >= deadline):
                    break
                if 0 < batch < SMALL_BATCH and not behind:
                    time.sleep(COALESCE_SECONDS)
            summary.ended_by = stop or ("target exited" if not (processes or system_wide) else "duration")
        finally:
            self._switch(False)
            self.stopped = time.monotonic_ns()
            self.threads.stopped = True
            self._attachment.close()
            if self.calls:
                self.calls.release(self.rings.hook_forks_told)
            signal_wakeup(previous_wakeup)
            self.signals.hold()
            processes.close()
            for fd in (wake_read, wake_write):
                os.close(fd)
            poller.close()
        if self.walker and self.rings.process_events:  # the last execs: those gone already are counted
            self.walker.hear(self.rings.process_events)
        try:
            while self.rings.drain(consume, copy):
                pass
            self.exits.finish(consumer, last=True)
        except OutputFailed as failure:
            self._output_failed(failure)
            while self.rings.drain(_discard, _discard if copy else None):
                pass
        summary.events = self.counter(COUNTER_EVENTS)
        summary.lost, summary.notes = self.losses()
        summary.seconds = (self.stopped - self.start) / 1e9
        summary.processes = processes.seen
        return summary

    def _leave_out_tracers(self, found_lines: FoundLines, progress: Optional[Progress], consumer: Consumer) -> None:
        """The other tracers running now left out; one told of as found is told of again."""
        read = self.other_tracers.sync()
        if read and not consumer.screen:
            found_lines.left_out(read, progress)

    def _hear_of_processes(self, processes: _Processes) -> None:
        """Forks to follow, children that inherited a hook, and processes the walker should
        know of."""
        if self.calls:
            self.calls.forked(self.rings.hook_forks_told())
        for parent, child in self.rings.forks.drain() if self.rings.forks else ():
            if self._follow(parent, child):
                processes.add(child)
        for pid, parent, kind, _ in self.walker.hear(self.rings.process_events) if self.rings.process_events else ():
            if kind == PROCESS_FORKED and self.follow_forks and parent in self.targets.binaries:
                processes.add(pid)

    def _output_failed(self, failure: OutputFailed) -> Callable[[list[tuple]], None]:
        """The output cannot be written any more: stop, and drain what is left into nothing."""
        self.output_failure = failure
        return _discard

    def release_signals(self) -> None:
        self.signals.release()

    def close(self) -> None:
        if self.calls:
            self.calls.release(self.rings.hook_forks_told)
        self._attachment.close()
        self.rings.close()
        if self.other_tracers:
            self.other_tracers.close()
        if self.walker:
            self.walker.close()
        self.program.close()


def signal_wakeup(fd: int) -> int:
    """A signal writes to fd, so that the run loop wakes from its poll (the previous fd back)."""
    return signal.set_wakeup_fd(fd)


def _discard(records) -> None:
    """Where records go once the output has failed."""


TRACEFS = "/sys/kernel/tracing"


def ensure_tracefs() -> None:
    """Tracing takes tracepoints (task exits; task creations with --follow-forks), which bcc
    finds through tracefs: mount it where the system has not (as `mount -t tracefs nodev
    /sys/kernel/tracing` would)."""
    if os.path.isdir(f"{TRACEFS}/events"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        error = ctypes.get_errno()
        raise KernelSetup(f"tracing needs tracefs, and mounting it at {TRACEFS} failed: {os.strerror(error)}")
    print(f"pybpftrace: mounted tracefs at {TRACEFS} (needed for its tracepoints)", file=sys.stderr)


def exit_has_group_dead() -> bool:
    """Whether the task exit tracepoint says when a process's last thread exits (Linux 6.16)."""
    try:
        with open(f"{TRACEFS}/events/sched/sched_process_exit/format") as format_file:
            return "group_dead" in format_file.read()
    except OSError:
        return False


@dataclass
class TraceOptions:
    """What every tracing command takes: what to trace, for how long, how."""

    target: TargetOptions = field(default_factory=TargetOptions)
    duration: Optional[float] = None
    buffer_mib: float = DEFAULT_BUFFER_MIB
    follow_forks: bool = False
    quiet: bool = False  # no live status line
    route: Optional[str] = None  # how calls are followed (routes.py): None, the default for each process
    eval_hook: bool = False  # the eval-frame route may set the hook of processes traced by PID
    qualnames: bool = False  # functions named by co_qualname, Class.method (3.11+)


def counted_calls(options: TraceOptions, command: str) -> Optional[CallTargets]:
    """For a command that samples stacks and counts calls where it can (top): the processes
    traced by PID or launched, by their routes; None where their calls cannot be counted (said
    in its output), or with --binary and --all (which count them where the probes are)."""
    if options.target.binaries or options.target.all_pythons or options.target.subprocesses:
        return None
    try:
        return find_call_targets(options.target, command, options.route, options.eval_hook)
    except (NoProbes, NotPython):  # a command that is no Python: sampled in the Pythons it starts
        return None


def run_tool(
    command: str,
    spec: ProgramSpec,
    layout: Optional[struct.Struct],
    options: TraceOptions,
    make_consumer: Callable[[Session], Consumer],
    configure: Callable[[Session], None] = lambda session: None,
    sampling: Optional[Sampling] = None,
    probes: tuple[str, ...] = (),
) -> int:
    """Trace for `command` from start to end: the exit code (a launched command's own). A
    program that walks stacks (spec.walker) streams records of any length on `samples`, and
    its uprobes go where the targets' binaries have `probes`."""
    require_privileges(f"pybpftrace {command}")
    if options.follow_forks and (options.target.binaries or options.target.all_pythons):
        raise TraceError("--follow-forks goes with PIDs or a command: --binary and --all trace every process already")
    walked: dict[int, WalkedBinary] = {}
    selection = calls = None
    if spec.follows_calls and not spec.walker_samples:  # calls, by a route per process
        found = find_call_targets(options.target, command, options.route, options.eval_hook)
        targets, walked, calls = found.targets, found.walked, CallRoutes(found)
    elif spec.walker and not layout:  # stacks are what it traces (and with probes, calls too)
        found = counted_calls(options, command) if spec.follows_calls and probes else None
        if found is None:
            targets, walked, selection = find_walked_targets(options.target, probes)
            found = CallTargets(targets, walked) if spec.follows_calls else None
        targets, walked = found.targets if found else targets, found.walked if found else walked
        calls = CallRoutes(found) if found else None
    else:
        targets = find_targets(options.target, command, NEEDED_PROBES)
        if spec.walker:  # and the stacks its events fire in
            walked, selection = walked_for(targets, options.target)
    launched = targets.launched
    session = consumer = None
    try:
        samples = spec.walker and (spec.walker_samples or not spec.follows_calls)
        ring = "events" if layout else "samples" if samples else None
        session = Session(spec, targets, ring, layout, options.buffer_mib, options.follow_forks,
                          walked=walked, sampling=replace(sampling or Sampling(), qualnames=options.qualnames),
                          selection=selection, calls=calls)
        configure(session)
        session.attach()
        # before the announcement: a target may be done with right after it (the consumer
        # holds its files open from the start)
        consumer = make_consumer(session)
        session.announce()
    except BaseException:
        if consumer is not None:
            consumer.close()
        if session is not None:  # attached already: its probes and signal handlers go too
            session.release_signals()
            session.close()
        if launched:
            launched.abandon()
        raise
    progress = None
    try:  # from the announcement to the summary, signals stop the trace or wait for its output
        try:
            if wanted(options.quiet, consumer.writes_stdout):
                counts = lambda: (session.counter(COUNTER_EVENTS), session.counter(COUNTER_EVENTS_LOST))
                progress = Progress(counts, consumer.writing, consumer.unit)
            summary = session.run(consumer, options.duration, progress)
            if progress:
                progress.clear()
            if not session.output_failure:
                try:
                    consumer.finish(summary)
                except OutputFailed as failure:
                    session.output_failure = failure
                    summary.ended_by = "output closed" if failure.closed else "output failed"
            summary.threads = consumer.thread_count()
        finally:
            if progress:
                progress.clear()
            consumer.close()
            session.close()
        print(shown(summary.line()), file=sys.stderr)
    finally:
        session.release_signals()
    code = launched.wait() if launched else 0
    failure = session.output_failure
    if failure:
        if failure.output:  # None when what failed is not an output (the spool's directory)
            failure.output.discard()
        if not failure.closed:  # a closed pipe (`| head`) had all it wanted
            raise failure
    return code
