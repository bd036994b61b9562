"""The user side of the kernel's frame walker (bpf/pystacks.h): which processes it reads, with
their interpreter's layout and addresses moved by the load bias, the programs it tail-calls,
and the sampling clock that runs it on every CPU.

A process is registered once its interpreter is mapped: at once for a running process, a few
milliseconds after `exec` for a launched command (the dynamic loader maps libpython then).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import KernelSetup, NotFound, NotPermitted, NotPython, Unsupported
from .events import (
    COUNTER_PROCESS_EVENTS_LOST, COUNTER_PROCESSES_UNREAD, COUNTER_WITHOUT_GIL, GIL_LAST_HOLDER, GIL_LOCKED,
    OFFSET_NONE, PROCESS_BORN, PROCESS_EXECED, PROCESS_FORKED,
)
from .interpreter import Interpreter, qualified, read_interpreter
from .iterator import IteratorProgram, TaskIterator
from .descendants import children, descendants, descends_from
from .guardian import start_time
from .namespaces import tell_kernel
from .probes import NotAnElf, load_segments, parsed_elf
from .program import Loss
from .unread import ProcessTree, Unread, looks_like_python, program_name
from .target import (
    SYSTEM_WIDE,
    ByFile,
    Launched,
    PythonBinary,
    TargetOptions,
    Targets,
    all_pythons,
    check_process,
    command_binaries,
    describe_process,
    linked_libpython,
    process_binaries,
    process_state,
    read_maps,
    skipped_binaries,
    thread_file,
    thread_ids,
    thread_stat,
)

DEFAULT_RATE = 999  # Hz: see the README for what it costs
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
GONE = ("Z", "X", "")  # process_state of a process that has exited (zombie, dead, reaped)
REGISTER_WITHIN = 10.0  # seconds a launched command has to map its interpreter
FOUND_HELD = 1024  # Pythons found and not yet told of that are kept (Session tells them as it goes)
LAUNCH_WAIT = 1.0  # seconds attach waits for a launched command to exec and map its interpreter
DUMP_STEPS_MAX = 100_000  # runs of the dump iterator a dump may take (a few per thread)


@dataclass(frozen=True)
class WalkedBinary:
    """An interpreter binary the walker reads, and where its first segment is linked."""

    binary: PythonBinary
    interpreter: Interpreter
    first_segment: int  # link-time address of the segment at file offset 0


def walked_binary(binary: PythonBinary) -> WalkedBinary:
    """The interpreter of a binary (Unsupported says why its stacks cannot be read; NotFound,
    that the file can no longer be read: the process whose mapping it was has exited)."""
    try:
        stat = os.stat(binary.path)
        interpreter, first = _interpreter_of(binary.path, binary.shown_path, binary.version,
                                             (stat.st_dev, stat.st_ino, stat.st_mtime_ns))
    except OSError as error:
        raise NotFound(f"{binary.shown_path} can no longer be read ({error.strerror or error}): the process "
                       "that mapped it has exited") from None
    except NotAnElf as error:
        raise Unsupported(f"{binary.shown_path} is not a readable ELF file: {error}") from None
    return WalkedBinary(binary, interpreter, first)


_INTERPRETERS: ByFile[tuple[Interpreter, int]] = ByFile(64)


def _interpreter_of(path: str, shown_path: str, version, identity: tuple) -> tuple[Interpreter, int]:
    """A file's interpreter and where its first segment is linked, read once per file: every
    Python a shell script starts is registered without reading its ELF file again."""
    return _INTERPRETERS.get(identity, lambda: _read_interpreter(path, shown_path, version))


def _read_interpreter(path: str, shown_path: str, version) -> tuple[Interpreter, int]:
    interpreter = read_interpreter(path, shown_path, version)
    segments = parsed_elf(path, lambda elf, stream: load_segments(elf))
    first = min((segment.vaddr - segment.offset for segment in segments), default=0)
    return interpreter, first & ~(mmap.PAGESIZE - 1)


def _same_file(first: str, second: str) -> bool:
    try:
        one, other = os.stat(first), os.stat(second)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


@dataclass
class Selection:
    """The processes --binary and --all read, now and later: those running one of `chosen`
    (the interpreters of the binaries named), or any CPython whose stacks can be read; with
    roots (--subprocesses, or a launched command that is no Python), only among the roots
    and their descendants."""

    chosen: list[PythonBinary]
    any_python: bool = False
    roots: frozenset[int] = frozenset()
    named: tuple[str, ...] = ()  # the paths --binary was given, as given

    def match(self, pid: int) -> Optional[WalkedBinary]:
        """The interpreter pid runs, if it is one selected and mapped."""
        if self.roots and not descends_from(pid, self.roots):
            return None
        try:
            return self.interpreter_of(process_binaries(pid))
        except (NotFound, NotPermitted, OSError):  # gone meanwhile, or not ours to read
            return None

    def interpreter_of(self, binaries: list[PythonBinary]) -> Optional[WalkedBinary]:
        """The selected interpreter among a process's binaries, if it maps one (NotFound: the
        process has exited, and its binaries can no longer be read)."""
        for binary in binaries:
            if not binary.interpreter:
                continue
            if self.any_python or any(_same_file(binary.path, chosen.path) for chosen in self.chosen):
                try:
                    return walked_binary(binary)
                except (Unsupported, OSError):
                    return None
        return None

    def running(self) -> dict[int, WalkedBinary]:
        """The processes selected that run now (but ours)."""
        found = {}
        for pid in self._candidates():
            if pid != os.getpid():
                walked = self.match(pid)
                if walked is not None:
                    found[pid] = walked
        return found

    def _candidates(self) -> list[int]:
        if not self.roots:
            return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
        pids = list(self.roots)
        for root in self.roots:
            pids += descendants(root)[0]
        return list(dict.fromkeys(pids))

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The file names a process gone before it was looked at may have exec'd to run a
        chosen interpreter (unread.looks_like_python): the paths as named (a link, or the
        program that loads a libpython), where they lead, and the interpreters' own files."""
        paths = [*self.named, *map(os.path.realpath, self.named), *(chosen.path for chosen in self.chosen)]
        return frozenset(os.path.basename(path) for path in paths)

    def may_load(self, pid: int) -> bool:
        """Whether a process that just exec'd may still map a selected interpreter: its program
        links libpython (the dynamic loader maps it a moment later)."""
        try:
            executable = os.readlink(f"/proc/{pid}/exe")
            return bool(linked_libpython(f"/proc/{pid}/root{executable}"))
        except OSError:
            return False


def read_unsigned(pid: int, address: int, size: int = 8) -> int:
    """An unsigned integer of `size` bytes (a pointer by default) of the process's memory; 0
    where it cannot be read."""
    try:
        with open(f"/proc/{pid}/mem", "rb") as memory:
            memory.seek(address)
            return int.from_bytes(memory.read(size), "little")
    except (OSError, ValueError, OverflowError):
        return 0


def read_pointer(pid: int, address: int) -> int:
    """A pointer of the process's memory; 0 where it cannot be read."""
    return read_unsigned(pid, address)


def gil_holder(pid: int, gil: int) -> int:
    """The thread state holding the GIL at `gil` now; 0 when it is free or cannot be read (as
    pystacks.h's gil_holder reads it)."""
    if not gil or not read_unsigned(pid, gil + GIL_LOCKED, 4):
        return 0
    return read_pointer(pid, gil + GIL_LAST_HOLDER)


def gil_address(pid: int, interpreter: Interpreter, runtime: int) -> int:
    """Where the main interpreter's GIL is: in _PyRuntime up to 3.11, behind a pointer in the
    interpreter after; 0 where unknown."""
    layout = interpreter.layout
    if layout.runtime_gil != OFFSET_NONE:
        return runtime + layout.runtime_gil
    if layout.interp_gil == OFFSET_NONE:
        return 0
    interpreter_state = read_pointer(pid, runtime + layout.runtime_interpreters)
    return read_pointer(pid, interpreter_state + layout.interp_gil) if interpreter_state else 0


def load_bias(pid: int, walked: WalkedBinary) -> Optional[int]:
    """How far the process moved the binary from its link-time addresses; None while it is not
    mapped (yet)."""
    for mapping in read_maps(pid):
        if mapping.path == walked.binary.shown_path and mapping.offset == 0:
            return mapping.start - walked.first_segment
    return None


class MapFull(Exception):
    """A process the py_processes map has no room for (counted: Walker.notes)."""


class Walker:
    """The frame walker of a loaded program: its processes, its tail calls, its clock."""

    def __init__(self, program, continuations: tuple[tuple[str, str, str], ...], linetables: bool,
                 qualnames: bool = False, walks_every_thread: bool = False):
        """program: a LoadedProgram including pystacks.h; continuations: (program array,
        function, kind) its walks tail-call until done, where it has the array;
        walks_every_thread: it will (walk_every_thread), so its iterator loads from now on."""
        self._program = program
        self._qualnames = qualnames
        self._processes = program.table("py_processes")
        self.registered: dict[int, WalkedBinary] = {}
        self.gils: dict[int, int] = {}  # pid -> address of the GIL its threads wait on
        self._pending: dict[int, tuple[WalkedBinary | Selection, float, str]] = {}  # (wanted, deadline, program)
        self._before_exec: dict[int, WalkedBinary] = {}
        self._selection: Optional[Selection] = None
        self._tree: Optional[ProcessTree] = None  # under roots: their descendants (track)
        self.unread = Unread()  # processes gone before they were looked at
        self.refused = 0  # registrations the py_processes map had no room for
        self._tracers: frozenset[int] = frozenset()  # other pybpftrace tracers: never read (leave_out)
        self._going: dict[int, int] = {}  # registered, gone from the kernel's map: since what ring position
        self.found: list[tuple[int, Optional[int], WalkedBinary]] = []  # found since tracing began, untold
        # the dump's: loaded beside the continuations below where it will be needed, else later
        self._iterator = IteratorProgram(program, "dump_step") if walks_every_thread else None
        settings = program.table("walk_settings")
        value = settings.Leaf()
        value.linetables = int(linetables)
        settings[settings.Key(0)] = value
        for array, function, kind, *index in continuations:
            if program.has_table(array):
                programs = program.table(array)
                programs[ctypes.c_int(index[0] if index else 0)] = ctypes.c_int(program.function_fd(function, kind))

    def begin(self, walked: dict[int, WalkedBinary], launched: Optional[int], selection: Optional["Selection"],
              sampling: "Sampling", track_forks: Optional[bool]) -> None:
        """Before tracing is switched on: the processes to read registered (a launched command
        once it has exec'd), the sampling settings made, processes that exec (and, with
        track_forks, the children of registered ones) tracked where track_forks is not None,
        and the clock started."""
        for pid, binary in walked.items():
            if pid == launched:
                self.register_after_exec(pid, binary)
                continue
            if selection and pid in self._tracers:
                continue
            try:
                registered = self.register(pid, binary)
            except NotFound:
                registered = False
            except MapFull:
                continue
            if not registered and not selection:  # one of those selected may come and go
                raise NotFound(f"PID {pid} no longer maps {binary.binary.shown_path}")
        if sampling.off_cpu:
            if self._iterator is None:  # for the waits going on at the end (profile.py): verified while tracing
                self._iterator = IteratorProgram(self._program, "dump_step")
            settings = self._program.table("profile_settings")
            value = settings.Leaf()
            value.min_block = int(sampling.min_block * 1e9)
            value.tick_ns = clock_period_ns(sampling.rate) if sampling.rate else 0
            settings[settings.Key(0)] = value
            for pid in self.registered:
                self.note_waiting_threads(pid)
        if track_forks is not None:
            self.track(selection, forks=track_forks)
        if sampling.rate:
            self.start_clock(sampling.rate)

    def wait_launched(self, pid: int, process_events) -> None:
        """Wait (a few milliseconds) for a command let go to exec and map its interpreter, and
        register it before it runs Python code, or leave it to the run loop."""
        deadline = time.monotonic() + LAUNCH_WAIT
        while (pid in self._before_exec or pid in self._pending) and time.monotonic() < deadline:
            self.hear(process_events)
            self.register_pending()
            time.sleep(0.0005)

    def register(self, pid: int, walked: WalkedBinary) -> bool:
        """Let the walker read pid's stacks; False while its interpreter is not mapped, MapFull
        (counted) where the kernel's maps have no room for it."""
        bias = load_bias(pid, walked)
        if bias is None:
            return False
        interpreter = qualified(walked.interpreter) if self._qualnames else walked.interpreter
        value = py_process(self._processes.Leaf(), interpreter, bias)
        try:
            tell_kernel(self._program, pid)
            self._processes[self._processes.Key(pid)] = value
        except Exception as error:  # bcc's, for an update the kernel refused: E2BIG for a full map
            if ctypes.get_errno() != errno.E2BIG:
                raise
            self.refused += 1
            raise MapFull(f"PID {pid}: the py_processes map is full") from error
        self.registered[pid] = walked
        gil = gil_address(pid, walked.interpreter, value.runtime)
        if gil:
            self.gils[pid] = gil
        return True

    def leave_out(self, tracers: frozenset[int]) -> list[int]:
        """The other pybpftrace tracers running now (tracers.py): a selection never reads them,
        and one read already (found before it said it is a tracer) is read no more: those."""
        self._tracers = tracers
        read = sorted(tracers & self.registered.keys())
        for pid in read:
            try:
                del self._processes[self._processes.Key(pid)]
            except KeyError:
                pass
            del self.registered[pid]
            self.gils.pop(pid, None)
        self.found = [found for found in self.found if found[0] not in tracers]
        return read

    def sweep(self, produced: int, consumed: int) -> None:
        """Forget the processes the kernel no longer reads (exited, or exec'd and not heard of
        yet), once every sample sent before they went is consumed (their GIL tells their waits
        apart): what is kept of a process goes as it goes, however many come and go."""
        live = {int.from_bytes(key, sys.byteorder) for key, _ in self._program.entries("py_processes")}
        for pid, position in list(self._going.items()):
            if pid in live:  # registered again: its exec heard, or its PID another process's
                del self._going[pid]
            elif position <= consumed:
                del self._going[pid]
                self.registered.pop(pid, None)
                self.gils.pop(pid, None)
        for pid in self.registered.keys() - live - self._going.keys():
            self._going[pid] = produced

    def _selected(self, pid: int, walked: WalkedBinary) -> None:
        """A Python the selection found since tracing began, just registered: its children
        forked before are registered too, and the user is to be told of it (Session takes
        them as it goes: bounded all the same). One may be found twice, by a wait and then by
        the exec event heard late: its start time tells the teller it is the same process."""
        self._register_children(pid, walked)
        if len(self.found) < FOUND_HELD:
            self.found.append((pid, start_time(pid), walked))

    def notes(self, counter: Callable[[int], int], py_processes: int) -> list[str]:
        """The summary's notes on the processes whose stacks could not be read: not heard of (the
        kernel's ring of execs and forks was full), no room for them, gone before looked at."""
        notes = []
        untold = counter(COUNTER_PROCESS_EVENTS_LOST)
        if untold:
            notes.append(f"{untold} execs and forks not heard of: the process_events ring buffer was full (a Python "
                         "started then may not be read)")
        refused = counter(COUNTER_PROCESSES_UNREAD) + self.refused
        if refused:
            notes.append(f"{refused} processes not read: the py_processes map ({py_processes}) was full")
        return notes + self.unread.notes()

    def take_found(self) -> list[tuple[int, Optional[int], str]]:
        """The Pythons found since last asked: (PID, its start time, what it runs)."""
        found, self.found = self.found, []
        return [(pid, started, walked.binary.describe()) for pid, started, walked in found]

    def register_soon(self, pid: int, walked: WalkedBinary | Selection, program: str) -> None:
        """A launched command, or a process that exec'd `program`: registered once it has
        mapped its interpreter (for a Selection, if it maps one selected)."""
        self._pending[pid] = (walked, time.monotonic() + REGISTER_WITHIN, program)

    @property
    def waiting(self) -> bool:
        return bool(self._pending)

    def register_pending(self) -> None:
        for pid, (wanted, deadline, program) in list(self._pending.items()):
            if isinstance(wanted, Selection) and pid in self._tracers:
                del self._pending[pid]
                continue
            walked = wanted.match(pid) if isinstance(wanted, Selection) else wanted
            given_up = False
            try:
                registered = walked is not None and self.register(pid, walked)
            except NotFound:  # it exited first
                self.unread.add(program)
                registered, given_up = False, True
            except MapFull:
                registered, given_up = False, True
            if registered and isinstance(wanted, Selection):  # (a launched Python is no news)
                self._selected(pid, walked)
            if registered or given_up or time.monotonic() > deadline:
                del self._pending[pid]

    def register_after_exec(self, pid: int, walked: WalkedBinary) -> None:
        """A command held before exec: registered once the kernel says it exec'd (before, it
        is a copy of this very process) and its interpreter is mapped."""
        self._before_exec[pid] = walked

    def _register_children(self, pid: int, walked: WalkedBinary) -> None:
        """The children a process forked before user space registered it: the kernel, which
        registers the children of registered processes, did not know it yet."""
        for child in children(pid):
            if child not in self.registered:
                try:
                    if self.register(child, walked):
                        self._register_children(child, walked)
                except (NotFound, MapFull):
                    continue

    def track(self, selection: Optional[Selection], forks: bool) -> None:
        """Hear of processes that exec (to register those selected, and commands launched) and,
        with forks, register the children of registered ones in the kernel; under roots, hear
        of every process born, to know the roots' descendants once they are gone (seed_tree)."""
        self._selection = selection
        if selection is not None and selection.roots:
            self._tree = ProcessTree(selection.roots)
        settings = self._program.table("walk_settings")
        value = settings[settings.Key(0)]
        value.execs = 1
        value.forks = int(forks)
        value.births = int(self._tree is not None)
        settings[settings.Key(0)] = value

    def seed_tree(self) -> None:
        """Once the kernel tells of births: the roots' descendants that run already."""
        if self._tree is not None and self._selection is not None:
            for root in self._selection.roots:
                self._tree.add(descendants(root)[0])

    def hear(self, process_events) -> list[tuple[int, int, int, bytes]]:
        """The kernel's news of processes (execs, forks, births) taken off their ring and
        acted on; what they were: (pid, parent, kind, program)."""
        events = process_events.drain()
        for event in events:
            self.process_event(*event)
        return events

    def process_event(self, pid: int, parent: int, kind: int, program: bytes = b"") -> None:
        if kind in (PROCESS_FORKED, PROCESS_BORN) and self._tree is not None:
            self._tree.born(pid, parent)
        if kind == PROCESS_FORKED and parent in self.registered:
            self.registered[pid] = self.registered[parent]
            if parent in self.gils:
                self.gils[pid] = self.gils[parent]
            return
        if kind != PROCESS_EXECED:
            return
        if pid in self._before_exec:
            self.register_soon(pid, self._before_exec.pop(pid), program_name(program))
            self.register_pending()
        elif self._selection is not None:
            self.registered.pop(pid, None)
            self._look_at_exec(pid, self._selection, program_name(program))

    def _look_at_exec(self, pid: int, selection: Selection, program: str) -> None:
        """A process that exec'd: registered if it runs a selected interpreter, or soon if it
        may map one; counted as unread if it is gone (and may have been one of those read)."""
        tree = self._tree
        if pid in self._tracers or tree is not None and pid not in tree and not descends_from(pid, selection.roots):
            return
        try:
            binaries = process_binaries(pid)
            if not binaries and process_state(pid) in GONE:  # exited, its memory gone with it
                raise NotFound(f"PID {pid} exited")
            walked = selection.interpreter_of(binaries)
            if walked is not None and self.register(pid, walked):
                self._pending.pop(pid, None)  # a wait from an earlier exec of its (a shell script's)
                self._selected(pid, walked)
                return
        except (NotFound, OSError) as error:  # an OSError is a file of its /proc entry gone, or not ours
            if isinstance(error, NotFound) or process_state(pid) in GONE:
                if tree is not None or looks_like_python(program, selection.names):
                    self.unread.add(program)
            return
        except (NotPermitted, MapFull):
            return
        if selection.may_load(pid):
            self.register_soon(pid, selection, program)

    def walk_every_thread(self, pid: int, drain: Callable[[], None]) -> "DumpRun":
        """Every thread of pid walked by the dump iterator (bpf/dump.h) while it runs on, its
        stacks sent as SAMPLE_DUMP records; drain takes them and the code objects off their
        rings after each step. Returns what the run met: stacks that did not fit their ring,
        thread lists that looped or led to unreadable memory, and how long it took."""
        dumps = self._program.table("dumps")
        state = dumps.Leaf()
        state.pid = pid
        dumps[dumps.Key(0)] = state
        if self._iterator is None:
            self._iterator = IteratorProgram(self._program, "dump_step")
        iterator = TaskIterator(self._iterator, pid)
        start = time.monotonic()
        try:
            for step in range(DUMP_STEPS_MAX):
                if dumps[dumps.Key(0)].finished:
                    break
                if step % 1024 == 1023 and not os.path.exists(f"/proc/{pid}"):
                    raise OSError  # no task left for the iterator to run at
                iterator.run()
                drain()
            unfinished = not dumps[dumps.Key(0)].finished
        except OSError:
            raise NotFound(f"PID {pid} exited while its stacks were read") from None
        finally:
            seconds = time.monotonic() - start
            iterator.close()
        drain()
        state = dumps[dumps.Key(0)]
        return DumpRun(state.lost, seconds, state.loops, state.unreadable, unfinished, bool(state.interpreters_cut))

    def close(self) -> None:
        """What the walker loaded beside its program (the dump's iterator)."""
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None

    def note_waiting_threads(self, pid: int) -> None:
        """The threads of pid off their CPU as tracing begins: their waits are counted from now
        (else they would be unknown until their next switch)."""
        table = self._program.table("off_cpu")
        now = time.monotonic_ns()  # the clock of bpf_ktime_get_ns
        for tid in thread_ids(pid):
            fields = thread_stat(pid, tid)
            if not fields or fields[0] == "R":
                continue
            value = table.Leaf()
            value.since, value.pid, value.syscall = now, pid, -1
            syscall = (thread_file(pid, tid, "syscall") or "").split()
            if syscall and syscall[0].isdigit():
                value.syscall, value.address = int(syscall[0]), int(syscall[1], 16)
            table[table.Key(tid)] = value

    def waits_at_end(self, stopped: int) -> dict[int, tuple[int, int, int, int, bool, int]]:
        """The waits still going on, or not yet sent, when tracing stopped (at `stopped`, on
        the monotonic clock): tid -> (pid, ns, system call, its first argument, preempted, ns
        of waits too short to be walked)."""
        waits = {}
        for tid, state in self._program.table("off_cpu").items():
            waited = state.waited + (stopped - state.since if state.since else 0)
            if waited > 0 or state.short_waits:
                preempted = bool(state.since and state.preempted)
                waits[tid.value] = (state.pid, waited, state.syscall, state.address, preempted, state.short_waits)
        return waits

    def start_clock(self, rate: int) -> None:
        """A tick every 1/rate seconds on every CPU, each walking the stack of the thread it
        interrupts (the CPU clock ticks whoever runs, so a busy thread gets `rate` a second)."""
        try:
            self._program.attach_perf_event(
                PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, "on_tick", sample_period=clock_period_ns(rate)
            )
        except Exception as error:  # bcc raises bare Exception
            raise KernelSetup(f"cannot start the sampling clock: {error}") from None


def py_process(value, interpreter: Interpreter, bias: int):
    """A struct py_process (bpf/events.h, value: bcc's ctypes of it) for an interpreter moved
    by bias: its layout, where its _PyRuntime and PyCode_Type are, its version."""
    for name, number in interpreter.layout.values().items():
        setattr(value.layout, name, number)
    value.runtime = interpreter.runtime + bias
    value.code_type = interpreter.code_type + bias
    major, minor = interpreter.version[:2]
    value.version = major << 8 | minor
    return value


def clock_period_ns(rate: int) -> int:
    """The sampling clock's period at `rate` ticks a second: what each tick stands for, in the
    clock itself, in the kernel's count of late ticks and in the time the ticks add up to."""
    return round(1e9 / rate)


@dataclass
class DumpRun:
    """What reading every thread of a process met."""

    lost: int  # stacks the ring had no room for
    seconds: float
    loops: int = 0  # thread lists that looped (their memory corrupted): left there
    unreadable: int = 0  # thread lists that led to memory that could not be read: left there
    unfinished: bool = False  # more thread states than a dump takes (DUMP_STEPS_MAX runs)
    interpreters_cut: bool = False  # the interpreter list loops, or holds more than a dump reads

    def notes(self) -> list[str]:
        """What the dump lacks, in words."""
        notes = []
        if self.loops:
            notes.append(f"thread list loops: each thread shown once ({self.loops} list{'s' * (self.loops > 1)})")
        if self.unreadable:
            notes.append(f"thread list leads to unreadable memory: threads after it not shown "
                         f"({self.unreadable} list{'s' * (self.unreadable > 1)})")
        if self.interpreters_cut:
            notes.append("interpreter list loops or holds more than 64: the interpreters after those not shown")
        if self.unfinished:
            notes.append(f"thread list longer than a dump reads ({DUMP_STEPS_MAX} steps): threads after it not shown")
        return notes


# --gil's ticks left out, for the summary (bpf/sampler.h)
WITHOUT_GIL = Loss(COUNTER_WITHOUT_GIL, "{n} samples of threads not holding the GIL left out (--gil)")


@dataclass
class Sampling:
    """What a command that walks stacks asks of the session."""

    rate: Optional[int] = None  # ticks a second on each CPU; None: walks start at other events
    linetables: bool = False  # code objects come with their line tables
    off_cpu: bool = False  # also where threads wait off a CPU (scheduler and system call tracepoints)
    min_block: float = 0.0  # seconds: shorter waits are counted, not walked
    gil_only: bool = False  # only the ticks of threads holding the GIL (--gil)
    qualnames: bool = False  # functions named by co_qualname (--qualnames)
    async_tasks: bool = False  # frames sent with their generators' tags (--async)


def _walked(binaries: list[PythonBinary], where: str) -> WalkedBinary:
    interpreters = [binary for binary in binaries if binary.interpreter]
    if not interpreters:
        raise NotPython(f"{where} is not a Python: it holds no CPython interpreter")
    return walked_binary(interpreters[0])


def process_interpreter(pid: int) -> WalkedBinary:
    """The interpreter a running process maps (NotPython and Unsupported say why none)."""
    return _walked(process_binaries(pid), f"PID {pid}")


def find_walked_targets(
    options: TargetOptions, probes: tuple[str, ...] = ()
) -> tuple[Targets, dict[int, WalkedBinary], Optional[Selection]]:
    """The processes whose stacks are read (or the command to launch), each with its
    interpreter, and the binaries of theirs that have `probes` (none needed); with --binary
    or --all, the Selection of processes to read as they come."""

    def with_probes(binaries: list[PythonBinary]) -> list[PythonBinary]:
        return [binary for binary in binaries if probes and binary.has(probes)]

    if options.argv:
        name, binaries = command_binaries(options.argv)
        python = any(binary.interpreter for binary in binaries)
        walked = _walked(binaries, name) if python else None  # else the Pythons it starts (_descendants_of)
        launched = Launched(options.argv)
        targets = Targets({launched.pid: with_probes(binaries)}, launched)
        if python and not options.subprocesses:
            return targets, {launched.pid: walked}, None
        if not python:
            targets.notes.append(f"{name} is no Python: the Pythons it starts are read")
        return targets, {launched.pid: walked} if python else {}, _descendants_of([launched.pid])
    if options.subprocesses:
        return _with_descendants(options.pids, with_probes)
    if options.binaries or options.all_pythons:
        selection = _selection(options)
        probed = with_probes(selection.chosen) if selection.chosen else all_pythons(probes) if probes else []
        return Targets({SYSTEM_WIDE: probed}, notes=skipped_binaries()), selection.running(), selection
    found, targets = {}, {}
    for pid in options.pids:
        check_process(pid)  # NotFound, or NotPython for a kernel thread
        binaries = process_binaries(pid)
        found[pid] = _walked(binaries, f"PID {pid}")
        targets[pid] = with_probes(binaries)
    return Targets(targets), found, None


def _descendants_of(roots: list[int]) -> Selection:
    return Selection([], any_python=True, roots=frozenset(roots))


def _with_descendants(pids: list[int], with_probes) -> tuple[Targets, dict[int, WalkedBinary], Selection]:
    """--subprocesses: the PIDs and their descendants that run a CPython now, and the Selection
    of those that start one later. A PID that runs none is said, once, not refused."""
    targets, notes = {}, []
    for pid in pids:
        check_process(pid)
        binaries = process_binaries(pid)
        targets[pid] = with_probes(binaries)
        if not any(binary.interpreter for binary in binaries):
            notes.append(f"{describe_process(pid)} runs no CPython: the Pythons it starts are read")
    selection = _descendants_of(pids)
    return Targets(targets, notes=notes), selection.running(), selection


def walked_for(targets: Targets, options: TargetOptions) -> tuple[dict[int, WalkedBinary], Optional[Selection]]:
    """The interpreters of targets found by their probes, so that their events' stacks can be
    read too: Unsupported says why not."""
    if SYSTEM_WIDE in targets.binaries:
        selection = _selection(options)
        return selection.running(), selection
    walked = {}
    for pid in targets.binaries:
        name, binaries = command_binaries(options.argv) if options.argv else (f"PID {pid}", process_binaries(pid))
        walked[pid] = _walked(binaries, name)
    return walked, None


def _selection(options: TargetOptions) -> Selection:
    """--binary PATH: the interpreter PATH runs (itself, or the libpython it loads), checked to
    be one whose stacks can be read; --all: any."""
    chosen = []
    for path in options.binaries:
        if not os.path.exists(path):
            raise NotFound(f"no such file: {path}")
        interpreters = [binary for binary in command_binaries([os.path.realpath(path)])[1] if binary.interpreter]
        if not interpreters:
            raise NotPython(f"{path} is not a Python: it holds no CPython interpreter")
        walked_binary(interpreters[0])  # Unsupported says why not
        chosen.append(interpreters[0])
    return Selection(chosen, options.all_pythons, named=tuple(options.binaries))
