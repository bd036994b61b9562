"""Stacks the kernel's frame walker sent, counted, and made into the call trees the renderers
draw. What the walker could not read shows as a frame saying so, never silently dropped:

- `[truncated]` above the outermost frame kept, when a stack was deeper than the walker goes;
- `[walk cut short]` above the frames read when a walk ran out of the kernel's tail calls;
- `[unreadable frame]` where a frame could not be read (the frames above it are unknown);
- `[unreadable code object]` for a frame whose code object could not be read;
- `[no Python frames]` for a thread running no Python code (C code, or between calls);
- `[no Python thread state]` for a thread the interpreter does not know (not a Python thread).

Time off a CPU ends in a frame saying why: `[GIL]` (waiting for it), `[preempted]` (runnable,
waiting for a CPU), or the system call the thread waited in (`[futex]`, `[clock_nanosleep]`).
Waits too short to be worth a walk (--min-block) are a thread's `[waits shorter than
--min-block]`, so that its time still adds up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .codes import UNANNOUNCED_CODE as UNANNOUNCED_CODE_NAME, UNKNOWN_CODE, Code, Codes
from .events import (
    GIL_SIZE,
    SAMPLE_CUT_SHORT,
    SAMPLE_OFF_CPU,
    SAMPLE_PREEMPTED,
    SAMPLE_RESUMED,
    SAMPLE_SHORT_WAITS,
    SAMPLE_FRAME,
    SAMPLE_HEAD,
    SAMPLE_NO_THREAD_STATE,
    SAMPLE_THREADS_UNSEARCHED,
    SAMPLE_TRUNCATED,
    SAMPLE_UNREADABLE,
    TAGGED_SAMPLE_FRAME,
)
from .sampling import clock_period_ns
from .stacks import CallTree, Frame, Node, nodes

TRUNCATED = Frame("[truncated]", "", 0)
CUT_SHORT = Frame("[walk cut short]", "", 0)
UNREADABLE_FRAME = Frame("[unreadable frame]", "", 0)
UNREADABLE_CODE = Frame(UNKNOWN_CODE, "", 0)
UNANNOUNCED_CODE = Frame(UNANNOUNCED_CODE_NAME, "", 0)
NO_FRAMES = Frame("[no Python frames]", "", 0)
NO_THREAD_STATE = Frame("[no Python thread state]", "", 0)
UNSEARCHED = Frame("[thread state not found among the first 4096]", "", 0)
SHORT_WAITS = Frame("[waits shorter than --min-block]", "", 0)

Key = tuple[int, int, int, tuple]  # pid, tid, flags, frames (code ids, or (code id, offset) pairs; then Frames)


@dataclass
class Sample:
    """One record of the walker, unpacked."""

    timestamp: int
    weight: int
    thread_id: int
    address: int
    pid: int
    tid: int
    kind: int
    flags: int
    syscall: int
    frames: list[tuple[int, int]]  # (code id, instruction offset), innermost first
    tags: list[int] = field(default_factory=list)  # tagged: each frame's generator's tag (0: none)
    above: tuple[Frame, ...] = ()  # --async: the frames its task's awaiters put above them (async_stacks.py)


def unpack(record: bytes, tagged: bool = False) -> Sample:
    """A record as a Sample; tagged (a program built for --async): with its frames' tags."""
    timestamp, weight, thread_id, address, pid, tid, depth, kind, flags, syscall = SAMPLE_HEAD.unpack_from(record)
    body = record[SAMPLE_HEAD.size : SAMPLE_HEAD.size + depth * SAMPLE_FRAME.size]
    if not tagged:
        return Sample(timestamp, weight, thread_id, address, pid, tid, kind, flags, syscall,
                      list(SAMPLE_FRAME.iter_unpack(body)))
    frames, tags = [], []
    for code, offset, tag in TAGGED_SAMPLE_FRAME.iter_unpack(body):
        frames.append((code, offset))
        tags.append(tag)
    return Sample(timestamp, weight, thread_id, address, pid, tid, kind, flags, syscall, frames, tags)


Reason = tuple  # why a thread was off its CPU: ("syscall", number), ("gil",), ("preempted",)
PREEMPTED = ("preempted",)
WAITING_FOR_GIL = ("gil",)
FUTEX = 202  # x86-64


@dataclass
class SampleCounts:
    """Samples counted by stack: ticks on a CPU, and time off one by why; with `lines`, frames
    keep their instruction offsets. gils: each process's GIL, to tell its waits apart."""

    lines: bool = False
    gils: dict[int, int] = field(default_factory=dict)
    on_cpu: Counter = field(default_factory=Counter)  # key -> ticks
    off_cpu: Counter = field(default_factory=Counter)  # (key, reason) -> ns
    flagged: Counter = field(default_factory=Counter)  # samples by the flags they carry
    unpaired_ns: int = 0  # time back from a preemption whose stack was lost
    unwalked_ns: int = 0  # time of waits going on at the end in threads gone before they were read
    short_waits: Counter = field(default_factory=Counter)  # (pid, tid) -> ns in waits not walked
    _preempted: dict[int, Key] = field(default_factory=dict)  # tid -> its stack as it left its CPU

    def add(self, records: Iterable[bytes]) -> None:
        self.add_samples(map(unpack, records))

    def add_samples(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            if sample.kind == SAMPLE_SHORT_WAITS:
                self.short_waits[(sample.pid, sample.tid)] += sample.weight
                continue
            if sample.kind == SAMPLE_RESUMED:
                key = self._preempted.pop(sample.tid, None)
                if key is None:
                    self.unpaired_ns += sample.weight
                else:
                    self.off_cpu[(key, PREEMPTED)] += sample.weight
                continue
            key = self._key(sample)
            if sample.kind == SAMPLE_PREEMPTED:
                self._preempted[sample.tid] = key
            elif sample.kind == SAMPLE_OFF_CPU:
                self.off_cpu[(key, self._reason(sample))] += sample.weight
            else:
                self.on_cpu[key] += sample.weight
            for flag in (SAMPLE_TRUNCATED, SAMPLE_UNREADABLE, SAMPLE_NO_THREAD_STATE, SAMPLE_CUT_SHORT):
                if sample.flags & flag:
                    self.flagged[flag] += 1

    def add_waits(self, waits: dict[int, tuple[int, int, int, int, bool, int]], stacks: dict[int, Sample]) -> None:
        """The waits still going on when tracing stopped (tid -> (pid, ns, system call, its
        first argument, preempted, ns of short waits)), with the stacks their threads are
        waiting in."""
        for tid, (pid, ns, syscall, address, preempted, short) in waits.items():
            if short:
                self.short_waits[(pid, tid)] += short
            if not ns:
                continue
            if preempted:
                key = self._preempted.pop(tid, None)
                if key is None:
                    self.unpaired_ns += ns
                else:
                    self.off_cpu[(key, PREEMPTED)] += ns
                continue
            sample = stacks.get(tid)
            if sample is None:  # it exited meanwhile
                self.unwalked_ns += ns
                continue
            sample.syscall, sample.address = syscall, address
            self.off_cpu[(self._key(sample), self._reason(sample))] += ns

    def _key(self, sample: Sample) -> Key:
        frames = tuple(sample.frames) if self.lines else tuple(code for code, _ in sample.frames)
        return (sample.pid, sample.tid, sample.flags, frames + sample.above)

    def _reason(self, sample: Sample) -> Reason:
        gil = self.gils.get(sample.pid)
        if sample.syscall == FUTEX and gil and gil <= sample.address < gil + GIL_SIZE:
            return WAITING_FOR_GIL
        return ("syscall", sample.syscall)

    @property
    def total(self) -> int:
        return sum(self.on_cpu.values())

    @property
    def threads(self) -> set[int]:
        return {key[1] for key in self.on_cpu} | {key[1] for key, _ in self.off_cpu}

    @property
    def processes(self) -> set[int]:
        return {key[0] for key in self.on_cpu} | {key[0] for key, _ in self.off_cpu}


def reason_frame(reason: Reason) -> Frame:
    """The frame an off-CPU stack ends in: why its thread waited."""
    from bcc.syscall import syscall_name

    if reason == PREEMPTED:
        return Frame("[preempted]", "", 0)
    if reason == WAITING_FOR_GIL:
        return Frame("[GIL]", "", 0)
    return Frame(f"[{syscall_name(reason[1]).decode()}]", "", 0)


class FrameNames:
    """Frames of code ids: `function (file:first line)`, or with lines the line running."""

    def __init__(self, codes: Codes, lines: bool):
        self._codes = codes
        self._lines = lines
        self.unannounced = 0  # frames whose code object was never announced
        self.lines_unknown = 0  # frames whose line could not be told

    def frame(self, item) -> Frame:
        if isinstance(item, Frame):  # a frame --async put above a task's
            return item
        code_id, offset = item if self._lines else (item, None)
        if not code_id:
            return UNREADABLE_CODE
        code: Optional[Code] = self._codes.get(code_id)
        if code is None:
            self.unannounced += 1
            return UNANNOUNCED_CODE
        if offset is None:
            return Frame(code.function, code.file, code.first_line)
        line = code.line(offset)
        if line is None:
            self.lines_unknown += 1
            line = 0
        return Frame(code.function, code.file, line)


def stack_frames(flags: int, frames: tuple, names: FrameNames) -> list[Frame]:
    """A sample's frames, outermost first, with what could not be read said as frames."""
    path = [names.frame(item) for item in reversed(frames)]
    if flags & SAMPLE_THREADS_UNSEARCHED:
        return [UNSEARCHED]
    if flags & SAMPLE_NO_THREAD_STATE:
        return [NO_THREAD_STATE]
    if flags & SAMPLE_UNREADABLE:
        path.insert(0, UNREADABLE_FRAME)
    if flags & SAMPLE_TRUNCATED:
        path.insert(0, TRUNCATED)
    if flags & SAMPLE_CUT_SHORT:
        path.insert(0, CUT_SHORT)
    return path or [NO_FRAMES]


WEIGHINGS = ("cpu", "idle", "off-cpu", "wall")


def call_trees(counts: SampleCounts, names: FrameNames, weighing: str = "cpu", rate: int = 1) -> list[CallTree]:
    """Per thread, its samples as a call tree, weighed: cpu, ticks on a CPU (node.samples);
    idle, ticks and the ticks the time off a CPU would have had at `rate` (node.samples);
    off-cpu, ns off a CPU (node.self_ns); wall, ns on and off (node.self_ns). An off-CPU stack
    ends in a frame saying why its thread waited."""
    trees: dict[int, CallTree] = {}

    def leaf(pid: int, tid: int, path: list[Frame]) -> Node:
        tree = trees.get(tid)
        if tree is None:
            tree = trees[tid] = CallTree(pid, tid, Node(None))
        node = tree.root
        for frame in path:
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = Node(frame)
            node = child
        return node

    if weighing != "off-cpu":
        for (pid, tid, flags, frames), ticks in counts.on_cpu.items():
            node = leaf(pid, tid, stack_frames(flags, frames, names))
            if weighing == "wall":
                node.self_ns += ticks * clock_period_ns(rate)
            else:
                node.samples += ticks
    if weighing != "cpu":
        for ((pid, tid, flags, frames), reason), ns in counts.off_cpu.items():
            leaf(pid, tid, stack_frames(flags, frames, names) + [reason_frame(reason)]).self_ns += ns
        for (pid, tid), ns in counts.short_waits.items():
            leaf(pid, tid, [SHORT_WAITS]).self_ns += ns
    if weighing == "idle":  # time off a CPU as the ticks it would have had, rounded per stack
        for tree in trees.values():
            for node in nodes(tree.root):
                node.samples += round(node.self_ns * rate / 1e9)
                node.self_ns = 0
    return list(trees.values())
