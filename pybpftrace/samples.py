"""Stacks the kernel's frame walker sent, counted, and made into the call trees the renderers
draw. What the walker could not read shows as a frame saying so, never silently dropped:

- `[truncated]` above the outermost frame kept, when a stack was deeper than the walker goes;
- `[walk cut short]` above the frames read when a walk ran out of the kernel's tail calls;
- `[unreadable frame]` where a frame could not be read (the frames above it are unknown);
- `[unreadable code object]` for a frame whose code object could not be read;
- `[no Python frames]` for a thread running no Python code (C code, or between calls);
- `[no Python thread state]` for a thread the interpreter does not know (not a Python thread).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .codes import Code, Codes
from .events import (
    SAMPLE_CUT_SHORT,
    SAMPLE_FRAME,
    SAMPLE_HEAD,
    SAMPLE_NO_THREAD_STATE,
    SAMPLE_THREADS_UNSEARCHED,
    SAMPLE_TRUNCATED,
    SAMPLE_UNREADABLE,
)
from .stacks import CallTree, Frame, Node

TRUNCATED = Frame("[truncated]", "", 0)
CUT_SHORT = Frame("[walk cut short]", "", 0)
UNREADABLE_FRAME = Frame("[unreadable frame]", "", 0)
UNREADABLE_CODE = Frame("[unreadable code object]", "", 0)
UNANNOUNCED_CODE = Frame("[code object not announced]", "", 0)
NO_FRAMES = Frame("[no Python frames]", "", 0)
NO_THREAD_STATE = Frame("[no Python thread state]", "", 0)
UNSEARCHED = Frame("[thread state not found among the first 4096]", "", 0)

Key = tuple[int, int, int, tuple]  # pid, tid, flags, frames (code ids, or (code id, offset) pairs)


@dataclass
class Sample:
    """One record of the walker, unpacked."""

    timestamp: int
    weight: int
    thread_id: int
    gil: int
    pid: int
    tid: int
    kind: int
    flags: int
    frames: list[tuple[int, int]]  # (code id, instruction offset), innermost first


def unpack(record: bytes) -> Sample:
    timestamp, weight, thread_id, gil, pid, tid, depth, kind, flags = SAMPLE_HEAD.unpack_from(record)
    frames = list(SAMPLE_FRAME.iter_unpack(record[SAMPLE_HEAD.size : SAMPLE_HEAD.size + depth * SAMPLE_FRAME.size]))
    return Sample(timestamp, weight, thread_id, gil, pid, tid, kind, flags, frames)


@dataclass
class SampleCounts:
    """Samples counted by stack; with `lines`, frames keep their instruction offsets."""

    lines: bool = False
    counts: Counter = field(default_factory=Counter)
    flagged: Counter = field(default_factory=Counter)  # samples by the flags they carry

    def add(self, records: Iterable[bytes]) -> None:
        for record in records:
            sample = unpack(record)
            frames = tuple(sample.frames) if self.lines else tuple(code for code, _ in sample.frames)
            self.counts[(sample.pid, sample.tid, sample.flags, frames)] += sample.weight
            for flag in (SAMPLE_TRUNCATED, SAMPLE_UNREADABLE, SAMPLE_NO_THREAD_STATE, SAMPLE_CUT_SHORT):
                if sample.flags & flag:
                    self.flagged[flag] += sample.weight

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def threads(self) -> set[int]:
        return {tid for _, tid, _, _ in self.counts}

    @property
    def processes(self) -> set[int]:
        return {pid for pid, _, _, _ in self.counts}


class FrameNames:
    """Frames of code ids: `function (file:first line)`, or with lines the line running."""

    def __init__(self, codes: Codes, lines: bool):
        self._codes = codes
        self._lines = lines
        self.unannounced = 0  # frames whose code object was never announced
        self.lines_unknown = 0  # frames whose line could not be told

    def frame(self, item) -> Frame:
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


def call_trees(counts: SampleCounts, names: FrameNames) -> dict[int, CallTree]:
    """Per thread, its samples as a call tree: each stack's count is its last frame's."""
    trees: dict[int, CallTree] = {}
    for (pid, tid, flags, frames), count in counts.counts.items():
        tree = trees.get(tid)
        if tree is None:
            tree = trees[tid] = CallTree(pid, Node(None))
        node = tree.root
        for frame in stack_frames(flags, frames, names):
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = Node(frame)
            node = child
        node.samples += count
    return trees
