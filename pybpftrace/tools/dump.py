"""`pybpftrace dump PID`: every thread's Python stack now, innermost frame first, with its thread
ids, names (Python's, from threading, and the OS's) and state: running, idle (and in which
system call), or waiting for the GIL.

The stacks are read by the kernel from our side (a task iterator, bpf/dump.bpf.c) while the
target runs on: nothing is paused. A thread that ran while its stack was read is read again in
its own context, at one tick of its own CPU clock (settled.py); one that never settles is shown
as changing. Python's thread names are read from our side too (thread_names.py), right after
the stacks. One program dumps every process asked for."""

from __future__ import annotations

import json
import mmap
import os
import sys
from dataclasses import dataclass, field
from typing import Optional, TextIO

from ..asyncio_tasks import AsyncTask, TaskSnapshot, read_tasks, versions as task_versions
from ..codes import Codes
from ..descendants import DESCENDANTS_MAX, descendants, parent
from ..errors import NotFound, NotPython, TraceError
from ..escaping import TerminalSafe, shown
from ..frame_locals import FrameLocals, Variable, locals_versions, process_locals
from ..events import (GIL_SIZE, SAMPLE_CHANGED, SAMPLE_HOLDS_GIL, SAMPLE_NO_THREAD_STATE, SAMPLE_TRUNCATED,
                      SAMPLE_UNREADABLE)
from ..namespaces import host_tids
from ..program import LoadedProgram, ProgramSpec, generate
from ..ringbuf import RecordRing
from ..samples import Sample
from ..sampling import WalkedBinary, Walker, find_walked_targets, gil_holder
from ..settled import settled_stacks
from ..task_tree import render as render_task_tree
from ..session import require_privileges
from ..target import TargetOptions, describe_process, thread_file, thread_stat
from ..thread_names import python_thread_names

SPEC = ProgramSpec("dump.bpf.c", (), walker=True)
CONTINUATIONS = (("walk_programs", "walk_on_tick", "perf_event"),)  # an aimed tick's walk
SAMPLES_PAGES = 256
CODES_PAGES = 1024
FUTEX = 202  # x86-64


@dataclass
class DumpOptions:
    pids: list[int] = field(default_factory=list)
    output: Optional[TextIO] = None
    json: bool = False
    subprocesses: bool = False  # their descendants too (py-spy's --subprocesses)
    locals: bool = False  # each frame's arguments and locals (py-spy's --locals)
    qualnames: bool = False  # functions named Class.method (co_qualname, 3.11+)


@dataclass
class ThreadStack:
    sample: Sample
    name: Optional[str]  # Thread.name, where threading knows the thread
    os_name: str  # its comm ("" once gone)
    state: str  # running, idle, waiting for the GIL, gone
    syscall: Optional[str]  # the system call an idle thread is in
    ns_tid: Optional[int] = None  # its TID in its process's PID namespace, where that is not ours
    locals: Optional[list[FrameLocals]] = None  # with --locals: each frame's, innermost first
    locals_note: Optional[str] = None  # with --locals: why it has none

    @property
    def holds_gil(self) -> bool:
        return bool(self.sample.flags & SAMPLE_HOLDS_GIL)


@dataclass
class ProcessDump:
    pid: int
    walked: WalkedBinary
    threads: list[ThreadStack]
    codes: Codes
    seconds: float
    lost: int
    notes: list[str] = field(default_factory=list)  # what the dump lacks (DumpRun.notes)
    tasks: Optional[TaskSnapshot] = None  # its asyncio tasks, read after the stacks (None: a version not read)


@dataclass
class NoPython:
    """A process --subprocesses came to that runs no CPython the walker reads (or is gone)."""

    pid: int
    error: TraceError

    @property
    def why(self) -> str:
        return str(self.error)


def thread_state(pid: int, sample: Sample) -> tuple[str, str, Optional[str]]:
    """(OS thread name, state, system call) of a dumped thread: running when the scheduler has
    it runnable; waiting for the GIL when it sleeps on a futex inside the GIL's state; idle
    otherwise, in the system call it sleeps in."""
    from bcc.syscall import syscall_name

    name = (thread_file(pid, sample.tid, "comm") or "").strip()
    fields = thread_stat(pid, sample.tid)
    if not fields:
        return name, "gone", None
    if fields[0] == "R":
        return name, "running", None
    syscall = (thread_file(pid, sample.tid, "syscall") or "").split()
    if not syscall or not syscall[0].isdigit():
        return name, "idle", None
    number = int(syscall[0])
    if number == FUTEX and sample.address and sample.address <= int(syscall[1], 16) < sample.address + GIL_SIZE:
        return name, "waiting for the GIL", None
    return name, "idle", syscall_name(number).decode()


def confirm_gil(threads: list[ThreadStack], before: int, after: int) -> None:
    """The walk saw the GIL's holder at one instant, the states are read after: a thread that
    held it only while it woke (then slept again, or waits for it now) does not hold it. A thread
    not running keeps `holds the GIL` only where one holder kept it locked from before the
    stacks were read to after the states were (a thread asleep with it, blocking the others)."""
    if before and before == after:
        return
    for thread in threads:
        if thread.state != "running":
            thread.sample.flags &= ~SAMPLE_HOLDS_GIL


class Dumper:
    """The dump program, loaded once for every process dumped."""

    def __init__(self, qualnames: bool = False) -> None:
        self.program = LoadedProgram(generate(SPEC, []), {"EVENTS_PAGES": SAMPLES_PAGES, "CODES_PAGES": CODES_PAGES})
        self._samples = RecordRing(self.program.table("samples").map_fd, SAMPLES_PAGES * mmap.PAGESIZE)
        self._codes_ring = RecordRing(self.program.table("codes").map_fd, CODES_PAGES * mmap.PAGESIZE)
        self.codes = Codes()
        self.walker = Walker(self.program, CONTINUATIONS, linetables=True, qualnames=qualnames, walks_every_thread=True)
        self.qualnames = qualnames

    def _drain(self) -> list[bytes]:
        for record in self._codes_ring.drain():
            self.codes.add(record)
        return list(self._samples.drain())

    def dump(self, pid: int, walked: WalkedBinary, with_locals: bool = False) -> ProcessDump:
        """Every thread's stack of a process, read by the kernel (settled.py)."""
        hosts = host_tids(pid)  # the walk reads the TIDs CPython keeps: in a container, its own
        if not self.walker.register(pid, walked):
            raise NotFound(f"PID {pid} no longer maps {walked.binary.shown_path}")
        gil = self.walker.gils.get(pid, 0)
        holder = gil_holder(pid, gil)
        settled = settled_stacks(self.walker, self.program, pid, self._drain, hosts)
        names = python_thread_names(pid, walked)
        inner = {host: own for own, host in hosts.items()}
        threads = []
        for sample in settled.stacks:
            os_name, state_name, syscall = thread_state(pid, sample)
            threads.append(ThreadStack(sample, names.get(sample.thread_id), os_name, state_name, syscall,
                                       inner.get(sample.tid) if hosts else None))
        confirm_gil(threads, holder, gil_holder(pid, gil))
        run = settled.run
        dump = ProcessDump(pid, walked, threads, self.codes, settled.seconds, run.lost, run.notes())
        if with_locals:
            add_locals(dump, self.qualnames)
        dump.tasks = read_tasks(pid, walked, self.qualnames)
        return dump

    def close(self) -> None:
        self._samples.close()
        self._codes_ring.close()
        self.walker.close()
        self.program.close()


def add_locals(dump: ProcessDump, qualnames: bool) -> None:
    """Each thread's locals, where the frames read from its memory now are those its stack
    showed (a thread that ran on meanwhile gets none, and says so)."""
    found = process_locals(dump.pid, dump.walked, qualnames)
    for thread in dump.threads:
        if found is None:
            thread.locals_note = f"--locals reads CPython {locals_versions()}"
            continue
        frames = found.get(thread.sample.tid)
        shown_frames = [(frame["function"], frame["file"]) for frame in _frames(dump, thread)]
        if frames is not None and [(frame.function, frame.file) for frame in frames[:len(shown_frames)]] == shown_frames:
            thread.locals = frames[:len(shown_frames)]
        elif shown_frames:
            thread.locals_note = "locals not read: the thread ran on after its stack was read"


def dump_processes(pids: list[int], subprocesses: bool = False, with_locals: bool = False, qualnames: bool = False) -> tuple[list[ProcessDump | NoPython], list[str]]:
    """Every thread's stack of each process (and with subprocesses, of their descendants now,
    nearest first, each once); the notes of what was left out. A process named that is not a
    Python is an error, unless subprocesses are asked for and one of them is."""
    order, notes = list(pids), []  # a PID named twice is dumped twice (two moments)
    if subprocesses:
        for pid in pids:
            if not os.path.exists(f"/proc/{pid}"):
                raise NotFound(f"no process with PID {pid}")
            found, cut = descendants(pid)
            order += [child for child in found if child not in order and child != os.getpid()]  # not this tracer
            if cut:
                notes.append(f"PID {pid} has more than {DESCENDANTS_MAX} descendants: those after them not shown")
    walked: dict[int, WalkedBinary | NoPython] = {}
    for pid in order:
        try:
            walked[pid] = find_walked_targets(TargetOptions(pids=[pid]))[1][pid]
        except TraceError as error:
            if not subprocesses:
                raise
            walked[pid] = NoPython(pid, error)
    if all(isinstance(found, NoPython) for found in walked.values()):
        for named in pids:  # a named process's own failure, where it is not that it runs no Python
            if not isinstance(walked[named].error, NotPython):
                raise walked[named].error
        raise NotPython(f"{', '.join(describe_process(pid) for pid in pids)}: no CPython in it or in its "
                        f"{len(order) - len(pids)} descendants")
    dumper = Dumper(qualnames)
    try:
        dumps: list[ProcessDump | NoPython] = []
        for pid in order:
            found = walked[pid]
            if isinstance(found, NoPython):
                dumps.append(found)
                continue
            try:
                dumps.append(dumper.dump(pid, found, with_locals))
            except NotFound as error:
                if not subprocesses:
                    raise
                dumps.append(NoPython(pid, error))
        return dumps, notes
    finally:
        dumper.close()


def _frames(dump: ProcessDump, thread: ThreadStack) -> list[dict]:
    frames = []
    for code_id, offset in thread.sample.frames:
        code = dump.codes.get(code_id) if code_id else None
        if code is None:
            frames.append({"function": "[unreadable code object]" if not code_id else "[code object not announced]",
                           "file": None, "line": None})
        else:
            frames.append({"function": code.function, "file": code.file, "line": code.line(offset)})
    return frames


def _frames_json(dump: ProcessDump, thread: ThreadStack) -> list[dict]:
    frames = _frames(dump, thread)
    if thread.locals is not None:
        for frame, found in zip(frames, thread.locals):
            frame["locals"] = [{"name": variable.name, "arg": variable.argument, "repr": variable.repr}
                               for variable in found.variables]
    return frames


def _status(thread: ThreadStack) -> str:
    status = thread.state + (f" in {thread.syscall}" if thread.syscall else "")
    return status + (", holds the GIL" if thread.holds_gil else "")


def _shown_name(thread: ThreadStack, process_name: str) -> str:
    """Python's name for the thread; else its OS name, unless it is the process's own."""
    if thread.name is not None:
        return thread.name
    return thread.os_name if thread.os_name != process_name else ""


def _locals_text(variables: list[Variable]) -> list[str]:
    """py-spy's layout: the arguments, then the other locals, each `name: repr`."""
    lines = []
    for heading, arguments in (("Arguments:", True), ("Locals:", False)):
        chosen = [variable for variable in variables if variable.argument == arguments]
        if chosen:
            lines.append(f"        {heading}")
            lines += [f"            {shown(variable.name)}: {shown(variable.repr)}" for variable in chosen]
    return lines


def render_text(dump: ProcessDump) -> str:
    binary = dump.walked.binary
    lines = [
        f"Process {dump.pid}: {shown(_command_line(dump.pid))}",
        f"{shown(binary.describe())}; stacks read in {dump.seconds * 1e3:.1f} ms, the process never paused",
        *(f"[{note}]" for note in dump.notes),
    ]
    process_name = (thread_file(dump.pid, dump.pid, "comm") or "").strip()
    for thread in dump.threads:
        sample = thread.sample
        thread_name = _shown_name(thread, process_name)
        name = f' "{shown(thread_name).replace(chr(34), chr(92) + chr(34))}"' if thread_name else ""
        lines.append("")
        inside = f" [TID {thread.ns_tid} in its PID namespace]" if thread.ns_tid is not None else ""
        lines.append(f"Thread {sample.tid} ({sample.thread_id:#x}){name}{inside}: {_status(thread)}")
        if sample.flags & SAMPLE_NO_THREAD_STATE:
            lines.append("    [no Python thread state]")
        frames = _frames(dump, thread)
        for index, frame in enumerate(frames):
            where = f" ({frame['file']}:{frame['line'] if frame['line'] is not None else '?'})" if frame["file"] else ""
            lines.append(f"    {shown(frame['function'])}{shown(where)}")
            if thread.locals is not None:
                lines += _locals_text(thread.locals[index].variables)
        if thread.locals_note:
            lines.append(f"    [{thread.locals_note}]")
        if not frames:
            lines.append("    [no Python frames]")
        if sample.flags & SAMPLE_UNREADABLE:
            lines.append("    [a frame could not be read: the stack stops there]")
        if sample.flags & SAMPLE_TRUNCATED:
            lines.append("    [truncated: deeper than 1024 frames]")
        if sample.flags & SAMPLE_CHANGED:
            lines.append("    [its stack kept changing while it was read: frames from several moments]")
    lines += _tasks_text(dump)
    return "\n".join(lines) + "\n"


def _tasks_text(dump: ProcessDump) -> list[str]:
    """The asyncio tasks, as a tree of who awaits whom; nothing where asyncio is not imported."""
    tasks = dump.tasks
    if tasks is None:
        version = ".".join(map(str, dump.walked.interpreter.version[:2]))
        return ["", f"[asyncio tasks not read: pybpftrace reads them on CPython {task_versions()}, not {version}]"]
    if not tasks.imported:
        return []
    count = len(tasks.tasks)
    lines = ["", f"asyncio tasks: {count} pending, read in {tasks.seconds * 1e3:.1f} ms"]
    lines += [f"[{shown(note)}]" for note in tasks.notes]
    return lines + render_task_tree(tasks.tasks)


def render_json(dump: ProcessDump) -> dict:
    return {
        "pid": dump.pid,
        "parent": parent(dump.pid) or None,
        "command": _command_line(dump.pid),
        "python": ".".join(map(str, dump.walked.interpreter.version)),
        "binary": dump.walked.binary.shown_path,
        "seconds": round(dump.seconds, 6),
        "notes": dump.notes,
        "threads": [{
            "tid": thread.sample.tid,
            **({"ns_tid": thread.ns_tid} if thread.ns_tid is not None else {}),
            "thread_id": thread.sample.thread_id,
            "name": thread.name,
            "os_name": thread.os_name,
            "state": thread.state,
            "syscall": thread.syscall,
            "holds_gil": thread.holds_gil,
            "truncated": bool(thread.sample.flags & SAMPLE_TRUNCATED),
            "unreadable": bool(thread.sample.flags & SAMPLE_UNREADABLE),
            "changing": bool(thread.sample.flags & SAMPLE_CHANGED),
            "frames": _frames_json(dump, thread),
            **({"locals_note": thread.locals_note} if thread.locals_note else {}),
        } for thread in dump.threads],
        "tasks": [_task_json(task) for task in dump.tasks.tasks] if dump.tasks is not None else None,
        "tasks_notes": dump.tasks.notes if dump.tasks is not None else [],
    }


def _task_json(task: AsyncTask) -> dict:
    return {
        "id": task.address,
        "name": task.name,
        "state": task.state,
        "thread": task.thread,
        "awaited_by": task.awaited_by,
        **({"parent_unknown": True} if task.parent_unknown else {}),
        "frames": [{"function": frame.function, "file": frame.file, "line": frame.line} for frame in task.frames],
    }


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return " ".join(part.decode(errors="replace") for part in stream.read().split(b"\0") if part)
    except OSError:
        return describe_process(pid)


def _no_python_json(process: NoPython) -> dict:
    return {"pid": process.pid, "parent": parent(process.pid) or None, "command": _command_line(process.pid), "python": None,
            "notes": [process.why], "threads": []}


def run(options: DumpOptions) -> int:
    require_privileges("pybpftrace dump")
    out = TerminalSafe(options.output or sys.stdout)
    dumps, notes = dump_processes(options.pids, options.subprocesses, options.locals, options.qualnames)
    if options.json:
        documents = [render_json(dump) if isinstance(dump, ProcessDump) else _no_python_json(dump) for dump in dumps]
        listed = options.subprocesses or len(documents) > 1
        out.write(json.dumps(documents if listed else documents[0]) + "\n")
    else:
        out.write("\n".join(render_text(dump) if isinstance(dump, ProcessDump)
                            else f"Process {dump.pid}: {shown(_command_line(dump.pid))}\n[{shown(dump.why)}]\n"
                            for dump in dumps))
    out.flush()
    for note in notes:
        print(f"pybpftrace: {note}", file=sys.stderr)
    lost = sum(dump.lost for dump in dumps if isinstance(dump, ProcessDump))
    if lost:
        print(f"pybpftrace: {lost} thread stacks did not fit the ring buffer and are missing", file=sys.stderr)
        return 1
    return 0
