"""One trace from start to end: targets resolved, program compiled and attached, ring buffers
drained until a stop condition, then everything detached and the summary line written."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import shlex
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

from .attach import AttachError, Uprobes
from .errors import KernelSetup, NotFound, NotPermitted, OutputFailed, TraceError
from .events import (
    COUNTER_EVENTS,
    COUNTER_EVENTS_LOST,
    COUNTER_NAMES_LOST,
    COUNTER_NO_MEMORY,
    COUNTER_PROCESSES_FULL,
    FORK_EVENT,
    NAMES_EVENT,
    PROCESS_EVENT,
    PROCESS_FORKED,
    SAMPLE_HEAD,
    PROCESS_TRACED,
    Names,
    Process,
)
from .codes import Codes
from .formats.model import Meta
from .program import LoadedProgram, Loss, ProgramSpec, generate
from .progress import Progress, wanted
from .ringbuf import RecordRing, RingBuffer
from .sampling import (
    Sampling, Selection, WalkedBinary, Walker, clock_period_ns, find_walked_targets, process_interpreter, walked_for,
)
from .sources import FirstLines
from .thread_names import python_names_by_tid
from .target import SYSTEM_WIDE, PythonBinary, TargetOptions, Targets, find_targets, thread_name
from .tools import NEEDED_PROBES

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
NAMES_PAGES = 2048  # 8 MiB: the names first seen between two drains (a new process sends thousands)
CODES_PAGES = 1024  # 4 MiB: the code objects first seen between two drains, line tables and all
FORKS_PAGES = 1
PROCESS_PAGES = 16
DEFAULT_BUFFER_MIB = 16
MAX_BUFFER_MIB = 1024  # the kernel takes a ring buffer of up to 4 GiB; more than this is a typo
# A batch smaller than this is followed by a short pause, so events arrive in batches.
SMALL_BATCH = 512
# At most this many records a drain, so that signals and the deadline are seen in time; also
# what a drain holds in memory at once, as tuples and then lines: a larger batch raises a
# streaming tracer's peak RSS and consumes no more events.
MAX_BATCH = 8192
COALESCE_SECONDS = 0.01
REGISTER_POLL_NS = 1_000_000  # how often to look whether a launched command mapped its interpreter
LAUNCH_WAIT = 1.0  # seconds attach waits for a launched command to exec and map its interpreter
# How often the processes that exited are looked for, and how often at most their part is
# taken (which reads a whole map: with --all on a busy machine, that is every Python's).
SWEEP_SECONDS = 1.0
TAKE_SECONDS = 10.0

# The kernel's maps whose size bounds what can be kept, and their sizes (entries): each is
# passed to the programs as NAME_MAX. Not preallocated unless said, they take memory for what
# they hold.
# PYBPFTRACE_MAP_SIZES="nodes=1000,threads=64" sets others (to see a map fill, in the tests).
MAP_SIZES = {
    "thread_frames": 65536,  # frames.h: a shadow stack per live thread (calls, stack --folded)
    "threads": 65536,  # stack.bpf.c: a state per live thread
    "last_entry": 65536,  # top.bpf.c: each live thread's last entry (CPython 3.15)
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
}
MAP_SIZES_VARIABLE = "PYBPFTRACE_MAP_SIZES"
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # end a trace cleanly

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


def pages_for(mebibytes: float) -> int:
    """Ring buffer pages for about this many MiB: a power of two, as the kernel wants."""
    pages = max(1, int(mebibytes * (1 << 20)) // mmap.PAGESIZE)
    return 1 << (pages - 1).bit_length()


@dataclass
class Summary:
    """What the end-of-run line reports."""

    events: int = 0  # handled by the programs
    lost: int = 0  # handled but dropped, not counted anywhere (the notes say why)
    seconds: float = 0.0
    ended_by: str = ""
    processes: int = 0
    threads: Optional[int] = None  # None where the events were counted in the kernel
    unit: str = "events"  # what the programs handle: events, samples
    notes: list[str] = field(default_factory=list)  # what could not be kept or is missing, and why

    def line(self) -> str:
        processes = f"{self.processes} processes, " if self.processes > 1 else ""
        threads = f"{self.threads} threads, " if self.threads is not None else ""
        notes = f" [{'; '.join(self.notes)}]" if self.notes else ""
        return (
            f"pybpftrace: {self.events} {self.unit}, {self.lost} lost{notes}, {processes}{threads}"
            f"{self.seconds:.2f} s ({self.ended_by})"
        )


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

    def __post_init__(self) -> None:
        self.names = Names()
        self.codes = Codes()
        self.sources = FirstLines()  # the targets' source files, for first lines of functions
        self._thread_names: dict[int, str] = {}
        self._python_names: dict[int, dict[int, str]] = {}  # pid -> TID -> Thread.name, read once stopped
        self.start = self.stopped = 0  # on the monotonic clock, in ns
        self.started = 0  # the wall clock at start, ns since the epoch
        self._stop: Optional[str] = None
        self.output_failure: Optional[OutputFailed] = None
        self._handlers: dict[int, object] = {}
        self._consumer: Optional[Consumer] = None
        self._taken = 0.0  # when exited processes were last taken (time.monotonic)
        self._exiting: set[Process] = set()  # exited, their events not all consumed yet
        self._pending_exits: list[tuple[int, set[Process]]] = []  # (events ring position, processes)
        pages = pages_for(self.buffer_mib)
        self.map_sizes = map_sizes()
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
            if self.layout:  # events of their own, with the stacks they fire in
                defines["STACKS"] = 1
        if self.follow_forks and not self.spec.walker:  # a walker follows forks in the kernel
            defines["FOLLOW_FORKS"] = 1
        binaries = [b for group in self.targets.binaries.values() for b in group]
        self.program = LoadedProgram(generate(self.spec, binaries), defines)
        self._events = self._ring(self.ring, pages, self.layout) if self.ring else None
        self._names_ring = self._ring("names", NAMES_PAGES, NAMES_EVENT)
        self._forks = self._ring("forks", FORKS_PAGES, FORK_EVENT) if "FOLLOW_FORKS" in defines else None
        tracks = self.spec.walker and (self.selection is not None or self.follow_forks or self.targets.launched)
        self._process_events = self._ring("process_events", PROCESS_PAGES, PROCESS_EVENT) if tracks else None
        self._codes_ring = self._ring("codes", CODES_PAGES, None) if self.spec.walker else None
        # the stacks that events fired in (--stacks), ahead of their events: by (tid, timestamp)
        self._stacks_ring = self._ring("samples", pages, None) if self.spec.walker and self.ring != "samples" else None
        self.event_stacks: dict[tuple[int, int], bytes] = {}
        self.walker = (
            Walker(self.program, self.spec.continuations, self.sampling.linetables) if self.spec.walker else None
        )
        self._uprobes = Uprobes()

    def _ring(self, name: str, pages: int, layout: Optional[struct.Struct]) -> RingBuffer | RecordRing:
        fd, size = self.program.table(name).map_fd, pages * mmap.PAGESIZE
        return RingBuffer(fd, size, layout) if layout else RecordRing(fd, size)

    def attach(self) -> None:
        """Attach to every target, then switch the programs on (announce() then says so and
        lets a launched command go: it is traced from its first instruction)."""
        try:
            for pid, binaries in self.targets.binaries.items():
                self._attach_process(pid, binaries)
        except AttachError as error:
            if error.errno == errno.ESRCH:
                raise NotFound(f"the target exited while attaching ({error})") from None
            if error.errno == errno.EINVAL:
                raise TraceError(
                    f"the kernel refused a uprobe ({error}): most likely another tracer (bcc's "
                    "tools or bpftrace) probes the same place without its semaphore; stop it and retry"
                ) from None
            raise KernelSetup(f"cannot attach: {error}") from None
        launched = self.targets.launched
        if self.walker:
            for pid, walked in self.walked.items():
                if launched and pid == launched.pid:
                    self.walker.register_after_exec(pid, walked)
                    continue
                try:
                    registered = self.walker.register(pid, walked)
                except NotFound:
                    registered = False
                if not registered and not self.selection:  # one of those selected may come and go
                    raise NotFound(f"PID {pid} no longer maps {walked.binary.shown_path}")
            if self.sampling.off_cpu:
                settings = self.program.table("profile_settings")
                value = settings.Leaf()
                value.min_block = int(self.sampling.min_block * 1e9)
                value.tick_ns = clock_period_ns(self.sampling.rate) if self.sampling.rate else 0
                settings[settings.Key(0)] = value
                for pid in self.walker.registered:
                    self.walker.note_waiting_threads(pid)
            if self._process_events:
                self.walker.track(self.selection, forks=self.selection is not None or self.follow_forks)
            if self.sampling.rate:
                self.walker.start_clock(self.sampling.rate)
        self._watch_sources()
        self.start = time.monotonic_ns()
        self.started = time.time_ns()
        self._switch(True)
        # From the moment the user is told tracing runs, Ctrl-C and SIGTERM end it cleanly.
        self._handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOPPING_SIGNALS}

    def announce(self) -> None:
        """Tell the user tracing runs, and let a launched command go."""
        print(f"pybpftrace: tracing {self.describe()}; Ctrl-C to stop", file=sys.stderr, flush=True)
        launched = self.targets.launched
        if launched:
            launched.release()
            if self.walker:
                self._register_launched(launched.pid)

    def _register_launched(self, pid: int) -> None:
        """Wait (a few milliseconds) for a command let go to exec and map its interpreter, and
        register it before it runs Python code, or leave it to the run loop."""
        deadline = time.monotonic() + LAUNCH_WAIT
        while pid not in self.walker.registered and time.monotonic() < deadline:
            for event in self._process_events.drain():
                self.walker.process_event(*event)
            self.walker.register_pending()
            time.sleep(0.0005)

    def _watch_sources(self) -> None:
        """Hold each target's root and working directory, and note its threads' names, from
        before it is told tracing runs: a short-lived target may exit before the trace ends,
        its files with it. A launched command's files are this process's."""
        launched = self.targets.launched
        for pid in self.targets.pids:
            if launched and pid == launched.pid:
                self.sources.watch(pid, root="/", cwd=os.getcwd())
                continue  # held before exec: its name is still ours
            self.sources.watch(pid)
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                tids = []  # gone already
            for tid in tids:
                self.os_thread_name(pid, int(tid))

    def thread_name(self, pid: int, tid: int) -> str:
        """A thread's name: once tracing has stopped, its Python name (Thread.name) where it
        still runs and threading knows it; else its OS name, read when tracing began or when
        first asked."""
        if self.stopped:
            names = self._python_names.get(pid)
            if names is None:
                names = self._python_names[pid] = self._read_python_names(pid)
            if tid in names:
                return names[tid]
        return self.os_thread_name(pid, tid)

    def os_thread_name(self, pid: int, tid: int) -> str:
        """A thread's OS name (comm): read when tracing began or when first asked, "" if it was
        gone."""
        name = self._thread_names.get(tid)
        if name is None:
            name = thread_name(pid, tid)
            if name:
                self._thread_names[tid] = name
        return name

    def _read_python_names(self, pid: int) -> dict[int, str]:
        """TID -> Thread.name of a process's threads, read out of its memory (after tracing,
        which it must not slow down): {} where they cannot be."""
        walked = self.walker.registered.get(pid) if self.walker else None
        if walked is None:
            try:
                walked = process_interpreter(pid)
            except (TraceError, OSError):  # gone, or an interpreter whose layout is not known
                return {}
        return python_names_by_tid(pid, walked)

    def _attach_process(self, pid: int, binaries: list[PythonBinary], path=lambda path: path) -> None:
        """The program's uprobes in one process (path: where that process's files are)."""
        for placement in self.program.placements:
            if placement.binary in binaries:
                semaphore = placement.location.semaphore
                self._uprobes.attach(
                    self.program.entry_fd(placement.entry),
                    path(placement.binary.path),
                    placement.location.offset,
                    pid,
                    semaphore.offset if semaphore else 0,
                )
        for binary in binaries:
            self._raise_line_semaphore(pid, binary, path(binary.path))
        if self.follow_forks:
            processes = self.program.table("processes")
            processes[processes.Key(pid)] = processes.Leaf(PROCESS_TRACED)

    def _follow(self, parent: int, child: int) -> bool:
        """Attach to a child forked by a traced process: its memory map is its parent's, and
        so are its files, named through its own /proc entry."""
        binaries = self.targets.binaries.get(parent)
        if binaries is None:
            return False
        self.targets.binaries[child] = binaries
        try:
            self._attach_process(child, binaries, lambda p: p.replace(f"/proc/{parent}/", f"/proc/{child}/"))
        except AttachError:
            return False  # it exited, or exec'd something else, before we got there
        self.sources.watch(child)
        return True

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
            parts.append(f"every process running {what}" if pid == SYSTEM_WIDE else f"PID {pid} ({what})")
        forks = " and the processes they fork" if self.follow_forks else ""
        return f"{', '.join(parts)}{forks}"

    def describe(self) -> str:
        how = []
        if self._uprobes:
            how.append(f"{len(self._uprobes)} uprobes")
        if self.sampling.rate:
            how.append(f"{self.sampling.rate} samples a second")
        return f"{self.target()} with {' and '.join(how) or 'nothing attached'}"

    def meta(self, summary: "Summary") -> Meta:
        """What was traced, for the headers of output files."""
        notes = [f"{summary.lost:,} events lost (the ring buffer was full)"] if summary.lost else []
        command = "pybpftrace " + shlex.join(sys.argv[1:])
        return Meta(command, self.target(), summary.seconds, self.started, notes)

    def _raise_line_semaphore(self, pid: int, binary: PythonBinary, path: str) -> None:
        """CPython 3.11 runs function__entry only while the line semaphore is up (gh-98894).
        A uprobe carrying that semaphore, placed at the entry of a function a healthy
        interpreter never calls, makes the kernel raise it, and lower it whatever happens to
        the tracer, without a trap per line. With no such function found, the line probe
        itself carries it, at the cost of a trap per line."""
        line = binary.probes.probe("line")
        entries = "function__entry" in self.spec.probe_names
        if not entries or not binary.quirks.entry_needs_line_semaphore or line is None:
            return
        offset = binary.never_called_offset
        for semaphore in line.semaphores:
            place = offset if offset is not None else line.locations[0].offset
            self._uprobes.attach(None, path, place, pid, semaphore.offset)

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
        skipped = self.program.skipped_runs()
        if skipped:
            notes.append(f"{skipped} events the kernel did not run pybpftrace's programs for (another BPF program "
                         "was running on that CPU): what they carried is missing")
        return dropped, notes

    def sweep_exits(self) -> None:
        """Find the processes that exited: those whose names are held, whose incarnation the
        kernel has dropped (lifetimes.h). They are done with once every event they sent is
        consumed (the events ring's position now)."""
        held = {process for process in self.names.processes() if process[1]} - self._exiting
        if not held:
            return
        live = {(key.value, value.value) for key, value in self.program.table("incarnations").items()}
        exited = held - live
        if exited:
            position = self._events.producer_position() if self._events else 0
            self._pending_exits.append((position, exited))
            self._exiting |= exited

    def _sweep_last(self, consumer: "Consumer") -> None:
        """Tracing is off and every event consumed: the processes that exited are done with
        now (what is left of the others is the consumer's to read in finish)."""
        self.sweep_exits()
        self._finish_exits(consumer, last=True)

    def _finish_exits(self, consumer: "Consumer", last: bool = False) -> None:
        """The exited processes whose events are all consumed: the consumer takes its part,
        then their names go (all of theirs are drained first: they were sent before they
        exited, but a tracer that was stopped has not read them all yet)."""
        now = time.monotonic()
        if not last and now < self._taken + TAKE_SECONDS:
            return
        self._taken = now
        consumed = self._events.consumer_position() if self._events else 0
        if self._pending_exits and self._pending_exits[0][0] <= consumed:
            self._drain_names()
        while self._pending_exits and self._pending_exits[0][0] <= consumed:
            _, exited = self._pending_exits.pop(0)
            consumer.on_exits(exited)
            for process in exited:
                self.names.forget(process)
            self._exiting -= exited

    def _drain_names(self) -> None:
        while records := self._names_ring.drain(limit=MAX_BATCH):
            for record in records:
                if self.names.add(record) and self._consumer:
                    self._consumer.on_process(record[2])

    def _drain(self, consume: Callable[[list[tuple]], None]) -> int:
        # Names first: an event's names (a stack's code objects) were submitted before the
        # event was, so every event up to this producer position has its names among those
        # drained now.
        until = self._events.producer_position() if self._events else 0
        self._drain_names()
        if self._codes_ring:
            for record in self._codes_ring.drain():
                self.codes.add(record)
        if self._stacks_ring:
            for record in self._stacks_ring.drain():
                timestamp, _, _, _, _, tid = SAMPLE_HEAD.unpack_from(record)[:6]
                self.event_stacks[(tid, timestamp)] = record
        if not self._events:
            return 0
        records = self._events.drain(until, limit=MAX_BATCH)
        if records:
            consume(records)
        return len(records)

    def drain(self, consume: Callable[[list], None]) -> None:
        """Everything left on the rings, once tracing has stopped."""
        while self._drain(consume):
            pass

    def _on_signal(self, number: int, _frame) -> None:
        self._stop = signal.Signals(number).name

    def run(self, consumer: "Consumer", duration: Optional[float], progress: Optional[Progress] = None) -> Summary:
        """Drain events into the consumer until a signal, the duration, every traced
        process's exit, or its on_interval (called every consumer.interval seconds) saying it
        is done; with follow_forks, attach to each child as it is forked (on_fork hears of
        it); hand it each process that exits (on_exits)."""
        consume, interval = consumer.feed, consumer.interval
        self._consumer = consumer
        summary = Summary()
        poller = select.epoll()
        for ring in filter(None, (self._events, self._names_ring, self._forks, self._process_events)):
            poller.register(ring.fd, select.EPOLLIN)
        processes = _Processes(poller)
        for pid in self.targets.pids:
            processes.add(pid)
        system_wide = SYSTEM_WIDE in self.targets.binaries
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        poller.register(wake_read, select.EPOLLIN)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        deadline = self.start + int(duration * 1e9) if duration else None
        next_tick = self.start + int(interval * 1e9) if interval else None
        next_sweep = self.start + int(SWEEP_SECONDS * 1e9)
        try:
            while (processes or system_wide) and not self._stop:
                now = time.monotonic_ns()
                wake = min(filter(None, (deadline, next_tick)), default=now + 500_000_000)
                if self.walker and self.walker.waiting:  # a launched command maps its interpreter
                    self.walker.register_pending()
                    wake = min(wake, now + REGISTER_POLL_NS)
                for fd, _ in poller.poll(max(0.0, min(0.5, (wake - now) / 1e9))):
                    if fd == wake_read:
                        os.read(wake_read, 64)
                    else:
                        processes.exited(fd)
                for parent, child in self._forks.drain() if self._forks else ():
                    if self._follow(parent, child):
                        processes.add(child)
                        consumer.on_fork(child)
                for pid, parent, kind in self._process_events.drain() if self._process_events else ():
                    self.walker.process_event(pid, parent, kind)
                    if kind == PROCESS_FORKED and self.follow_forks and parent in self.targets.binaries:
                        processes.add(pid)
                try:
                    batch = self._drain(consume)
                    now = time.monotonic_ns()
                    if progress:
                        progress.update(self.start, now)
                    if now >= next_sweep:
                        next_sweep = now + int(SWEEP_SECONDS * 1e9)
                        self.sweep_exits()
                    self._finish_exits(consumer)
                    if next_tick is not None and now >= next_tick:
                        next_tick += int(interval * 1e9)
                        if consumer.on_interval():
                            self._stop = "done"
                except OutputFailed as failure:
                    consume = self._output_failed(failure)
                if self._stop or (deadline is not None and now >= deadline):
                    break
                if 0 < batch < SMALL_BATCH:
                    time.sleep(COALESCE_SECONDS)
            summary.ended_by = self._stop or ("target exited" if not (processes or system_wide) else "duration")
        finally:
            self._switch(False)
            stopped = self.stopped = time.monotonic_ns()
            self._uprobes.close()
            signal.set_wakeup_fd(previous_wakeup)
            # Stopped: what was traced is written whatever signals come (an impatient second
            # Ctrl-C, a supervisor's SIGTERM), held until release_signals(). Held, not merely
            # handled: a signal pending makes the kernel refuse a BPF program it is checking
            # (EAGAIN), and profile loads one at the end to read the stacks still waiting.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)
            processes.close()
            for fd in (wake_read, wake_write):
                os.close(fd)
            poller.close()
        try:
            while self._drain(consume):
                pass
            self._sweep_last(consumer)
        except OutputFailed as failure:
            self._output_failed(failure)
            while self._drain(_discard):
                pass
        summary.events = self.counter(COUNTER_EVENTS)
        summary.lost, summary.notes = self.losses()
        summary.seconds = (stopped - self.start) / 1e9
        summary.processes = processes.seen
        return summary

    def _output_failed(self, failure: OutputFailed) -> Callable[[list[tuple]], None]:
        """The output cannot be written any more: stop, and drain what is left into nothing."""
        self.output_failure = failure
        self._stop = "output closed" if failure.closed else "output failed"
        return _discard

    def release_signals(self) -> None:
        """Signals as they were before tracing began; those that came while the output was
        written (tracing had stopped already) are dropped."""
        if not self._handlers:
            return
        while signal.sigtimedwait(STOPPING_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

    def close(self) -> None:
        self._uprobes.close()
        self.sources.close()
        for ring in filter(None, (self._events, self._names_ring, self._forks, self._codes_ring,
                                  self._process_events, self._stacks_ring)):
            ring.close()
        self.program.close()


def _discard(records: list[tuple]) -> None:
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


class Consumer:
    """What a command does with its events. `interval`: seconds between on_interval calls;
    writes_stdout: whether it writes to stdout while tracing (then no status line goes to a
    terminal that shows both)."""

    interval: Optional[float] = None
    writes_stdout = True

    def __init__(self, session: "Session"):
        self.session = session
        self.threads: Optional[set[int]] = set()  # None where the kernel aggregates

    def feed(self, records: list[tuple]) -> None:
        """A batch of records from the events ring buffer, in order."""

    def on_fork(self, pid: int) -> None:
        """A forked child is traced from now on."""

    def on_process(self, pid: int) -> None:
        """A process first named (by --binary or --all, a process may be traced before the
        tracer hears of it): its files can be opened while it lives."""

    def on_exits(self, processes: set[Process]) -> None:
        """These processes have exited and their events are all fed: take what is needed of
        theirs (from the kernel's maps, from the names) before their names go."""

    def thread_count(self) -> Optional[int]:
        """The threads seen, for the summary line (None where the kernel aggregates)."""
        return None if self.threads is None else len(self.threads)

    def on_interval(self) -> bool:
        """Called every `interval` seconds; True ends the trace."""
        return False

    def finish(self, summary: Summary) -> None:
        """The trace has ended; the program's maps can still be read."""

    def writing(self) -> str:
        """What it is writing, in a few words, for the status line."""
        return ""

    def close(self) -> None:
        """Whatever happened: give back what the consumer holds (a terminal, say)."""


class SourcesConsumer(Consumer):
    """A consumer that reads the traced processes' source files (the session's FirstLines,
    which holds the targets' from before tracing is announced): a process found later (a
    fork, --binary, --all) is watched when first seen, and forgotten once it has exited, so
    that process churn does not hold files open without end."""

    def __init__(self, session: "Session"):
        super().__init__(session)
        self.sources = session.sources

    def on_fork(self, pid: int) -> None:
        self.on_process(pid)

    def on_process(self, pid: int) -> None:
        if pid not in self.sources:
            self.sources.watch(pid)  # a process found by --binary or --all

    def on_exits(self, processes: set[Process]) -> None:
        """(Subclasses take what they need of the processes first.)"""
        for pid, _ in processes:
            self.sources.forget(pid)


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
    selection = None
    if spec.walker and not layout:  # stacks are what it traces
        targets, walked, selection = find_walked_targets(options.target, probes)
    else:
        targets = find_targets(options.target, command, NEEDED_PROBES)
        if spec.walker:  # and the stacks its events fire in
            walked, selection = walked_for(targets, options.target)
    launched = targets.launched
    session = consumer = None
    try:
        ring = "events" if layout else "samples" if spec.walker else None
        session = Session(spec, targets, ring, layout, options.buffer_mib, options.follow_forks,
                          walked=walked, sampling=sampling or Sampling(), selection=selection)
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
                progress = Progress(counts, consumer.writing)
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
        print(summary.line(), file=sys.stderr)
    finally:
        session.release_signals()
    code = launched.wait() if launched else 0
    failure = session.output_failure
    if failure:
        failure.output.discard()
        if not failure.closed:  # a closed pipe (`| head`) had all it wanted
            raise failure
    return code
