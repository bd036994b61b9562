"""What every output format is written from: weighted stacks (a flame graph's data) and, for
the exact streamed trace, timelines of timed spans. Neither knows how it was traced.

Frames keep function, file and first line apart (pprof and speedscope want them apart; folded
stacks join them into one label). Weights carry their unit, and what they weigh."""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Optional

from ..spool import unnamed_file, write_at

NANOSECONDS = "nanoseconds"
MICROSECONDS = "microseconds"
CALLS = "calls"
SAMPLES = "samples"
TIME_UNITS = {NANOSECONDS: 1, MICROSECONDS: 1_000}  # in nanoseconds


def format_duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1e3:.3f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3f} ms"
    return f"{ns / 1e9:.3f} s"


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int  # the function's first line

    def label(self) -> str:
        """`function (file:line)`; a frame with no file ([truncated], [GIL]) is its name."""
        return f"{self.function} ({self.file}:{self.line})" if self.file else self.function


@dataclass(frozen=True)
class Weight:
    """What a stack's number counts: unit is one of NANOSECONDS, MICROSECONDS, CALLS, SAMPLES;
    kind names it for profile viewers (pprof's sample type: "wall", "cpu", "off-cpu",
    "calls", "samples"); described says it in words, for titles."""

    unit: str
    kind: str
    described: str

    @property
    def is_time(self) -> bool:
        return self.unit in TIME_UNITS

    def nanoseconds(self, value: int) -> int:
        return value * TIME_UNITS[self.unit]

    def format(self, value: int) -> str:
        """A weight for people: `1.234 ms`, `1,234 calls`."""
        if self.is_time:
            return format_duration(self.nanoseconds(value))
        return f"{value:,} {self.unit}"


WALL_SELF_TIME = Weight(NANOSECONDS, "wall", "self time, wall clock")
CALL_COUNT = Weight(CALLS, "calls", "calls")
SAMPLE_COUNT = Weight(SAMPLES, "samples", "samples")
OFF_CPU_TIME = Weight(NANOSECONDS, "off-cpu", "time off a CPU")
WALL_TIME = Weight(NANOSECONDS, "wall", "time on and off a CPU")


@dataclass
class Meta:
    """What was traced, for titles and file headers."""

    command: str = "pybpftrace"  # the pybpftrace command line
    target: str = ""  # e.g. "PID 42 (CPython 3.11.2 at /usr/bin/python3.11)"
    duration: float = 0.0  # seconds traced
    started: int = 0  # wall clock when tracing began, in ns since the epoch
    notes: list[str] = field(default_factory=list)  # what is missing and why

    def title(self, what: str) -> str:
        """`what of TARGET, DURATION s: COMMAND`."""
        target = f" of {self.target}" if self.target else ""
        return f"{what}{target}, {self.duration:.2f} s: {self.command}"


@dataclass(frozen=True)
class Thread:
    pid: int
    tid: int
    name: str = ""  # Thread.name where Python's was read, else its comm; "" where neither was

    def label(self) -> str:
        if not self.tid:  # counted per process
            return f"all threads of PID {self.pid}"
        return f"thread {self.tid}" + (f" ({self.name})" if self.name else "")


Stack = tuple[Frame, ...]  # outermost first


@dataclass
class Stacks:
    """Weighted stacks, per thread. per_thread asks formats that draw one picture (folded,
    SVG) to root each stack at its thread instead of merging threads."""

    weight: Weight
    meta: Meta = field(default_factory=Meta)
    threads: dict[int, Thread] = field(default_factory=dict)
    stacks: dict[int, dict[Stack, int]] = field(default_factory=dict)  # tid -> stack -> weight
    per_thread: bool = False

    def add(self, thread: Thread, stack: Stack, value: int) -> None:
        self.threads.setdefault(thread.tid, thread)
        per_stack = self.stacks.setdefault(thread.tid, {})
        per_stack[stack] = per_stack.get(stack, 0) + value

    def merged(self) -> dict[tuple[str, ...], int]:
        """Stacks of labels, threads merged (or rooted at `thread TID` where per_thread)."""
        totals: dict[tuple[str, ...], int] = {}
        for tid, per_stack in self.stacks.items():
            prefix = (f"thread {tid}",) if self.per_thread else ()
            for stack, value in per_stack.items():
                key = prefix + tuple(frame.label() for frame in stack)
                totals[key] = totals.get(key, 0) + value
        return totals


# Why a span's begin or end is not the exact time of its call or return
BEGAN_BEFORE_TRACING = 1  # its call was never seen: it began before tracing (begin: tracing's start)
ENTRY_NOT_SEEN = 2  # its call was lost (begin: the last event that bounds it)
RETURN_NOT_SEEN = 4  # its return was lost (end: the last event inside it)
STILL_RUNNING = 8  # running when tracing ended (end: tracing's end)
RETURN_LATE = 16  # its return was noticed after it happened (end: when it was noticed)
ENTRY_LATE = 32  # its call was noticed after it happened (begin: when it was noticed)

SPAN_NOTES = {
    BEGAN_BEFORE_TRACING: "began before tracing",
    ENTRY_NOT_SEEN: "entry not seen",
    RETURN_NOT_SEEN: "return not seen",
    STILL_RUNNING: "still running when tracing ended",
    RETURN_LATE: "return seen late",
    ENTRY_LATE: "entry seen late",
}


class Span(NamedTuple):
    frame: Frame
    begin: int  # ns since tracing began
    end: int
    depth: int  # 0 for the outermost calls seen; a span's callees are one deeper
    inexact: int = 0  # BEGAN_BEFORE_TRACING | ENTRY_NOT_SEEN | ...: which bound is not exact

    def notes(self) -> list[str]:
        return [note for flag, note in SPAN_NOTES.items() if self.inexact & flag]


_SPAN_FIELDS = 5
HELD_SPANS = 1 << 20  # spans held in memory (40 MiB) before they go to disk, with spill_to
_READ_BYTES = 40 * 8192  # spans read back from disk at a time


@dataclass
class Timeline:
    """Every call of every thread as a span, begin and end in ns since tracing began, held
    compactly (40 bytes a call); with spill_to (a directory), HELD_SPANS at most in memory, the
    others on disk, so that a long trace does not grow the tracer. Spans of a thread nest: a
    callee lies within its caller."""

    meta: Meta = field(default_factory=Meta)
    threads: dict[int, Thread] = field(default_factory=dict)
    processes: dict[int, str] = field(default_factory=dict)  # pid -> its name (comm), where known
    frames: list[Frame] = field(default_factory=list)
    _frame_ids: dict[Frame, int] = field(default_factory=dict)
    _spans: dict[int, array] = field(default_factory=dict)
    spill_to: Optional[str] = None
    _held: int = 0  # spans in memory
    _disk: Optional[int] = None  # the file of those on disk (without a name)
    _disk_size: int = 0
    _segments: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # tid -> (offset, size) on disk

    def add(self, tid: int, span: Span) -> None:
        frame_id = self._frame_ids.get(span.frame)
        if frame_id is None:
            frame_id = self._frame_ids[span.frame] = len(self.frames)
            self.frames.append(span.frame)
        self._spans.setdefault(tid, array("q")).extend((frame_id, span.begin, span.end, span.depth, span.inexact))
        self._held += 1
        if self.spill_to is not None and self._held >= HELD_SPANS:
            self._spill()

    def _spill(self) -> None:
        """Every span held in memory to the end of the file on disk, a segment per thread."""
        if self._disk is None:
            self._disk = unnamed_file(self.spill_to)
        for tid, values in self._spans.items():
            if values:
                data = values.tobytes()
                write_at(self._disk, data, self._disk_size)
                self._segments.setdefault(tid, []).append((self._disk_size, len(data)))
                self._disk_size += len(data)
                del values[:]
        self._held = 0

    def frame_id(self, frame: Frame) -> int:
        return self._frame_ids[frame]

    def spans(self, tid: int) -> Iterator[Span]:
        """A thread's spans, in the order their calls ended."""
        for offset, size in self._segments.get(tid, ()):
            for start in range(0, size, _READ_BYTES):
                values = array("q")
                values.frombytes(os.pread(self._disk, min(_READ_BYTES, size - start), offset + start))
                yield from self._unpacked(values)
        yield from self._unpacked(self._spans.get(tid, array("q")))

    def _unpacked(self, values: array) -> Iterator[Span]:
        frames = self.frames
        for at in range(0, len(values), _SPAN_FIELDS):
            frame_id, begin, end, depth, inexact = values[at : at + _SPAN_FIELDS]
            yield Span(frames[frame_id], begin, end, depth, inexact)

    def in_call_order(self, tid: int) -> list[Span]:
        """A thread's spans, callers before callees, earlier before later."""
        return sorted(self.spans(tid), key=lambda span: (span.begin, span.depth, span.end))

    def __len__(self) -> int:
        """How many spans it holds."""
        return self._held + self._disk_size // (8 * _SPAN_FIELDS)

    def close(self) -> None:
        """Give back the file of the spans on disk, if any."""
        if self._disk is not None:
            os.close(self._disk)
            self._disk = None

    def thread_ids(self) -> list[int]:
        return sorted(self._spans)

    def end(self) -> int:
        """When tracing ended, in ns since it began."""
        return round(self.meta.duration * 1e9)
