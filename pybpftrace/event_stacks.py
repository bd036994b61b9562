"""The Python stacks that events fired in (--stacks on gc, imports and audit): the kernel walks
the thread's stack when the event fires and sends it ahead of the event, with the event's
timestamp (bpf/event_stacks.h); the session keeps it by (thread, timestamp) until the event
asks for it. Shown under each event, innermost frame first, or aggregated by stack as folded
stacks."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, TextIO

from .escaping import shown
from .program import ProgramSpec
from .events import SAMPLE_UNREGISTERED
from .samples import FrameNames, Sample, stack_frames, unpack
from .sampling import Sampling
from .consumer import Consumer
from .session import Session
from .stacks import CallTree, Frame, Node

STACK_LOST = "[stack not read: its record was lost]"
UNREGISTERED = "[stack not read: its process was not known yet]"
KEPT_NS = 5_000_000_000  # stacks whose event never came (lost) are dropped after this
SAMPLING = Sampling(linetables=True)  # what a session reading events' stacks asks


def with_stacks(spec: ProgramSpec) -> ProgramSpec:
    """An event program's spec that also walks the stack each event fires in."""
    return replace(spec, walker=True, continuations=(("walk_uprobe_programs", "walk_on_uprobe", "kprobe"),))


class EventStacks:
    """Each event's stack, by its thread and timestamp."""

    def __init__(self, session):
        self._session = session
        self._names = FrameNames(session.codes, lines=True)
        self._functions = FrameNames(session.codes, lines=False)
        self._newest = 0

    def take(self, pid: int, tid: int, timestamp: int) -> Optional[Sample]:
        """The stack of the event; None when its record was lost."""
        record = self._session.event_stacks.pop((tid, timestamp), None)
        if timestamp > self._newest:
            self._newest = timestamp
            self._forget_older(timestamp - KEPT_NS)
        return unpack(record) if record is not None else None

    def frames(self, sample: Optional[Sample]) -> list[Frame]:
        """Outermost first, each with the line it was at; a frame saying why where none was read."""
        return self._frames(sample, lambda s: tuple(s.frames), self._names)

    def functions(self, sample: Optional[Sample]) -> list[Frame]:
        """Outermost first, each with its function's first line (so that calls merge)."""
        return self._frames(sample, lambda s: tuple(code for code, _ in s.frames), self._functions)

    @staticmethod
    def _frames(sample: Optional[Sample], items, names: FrameNames) -> list[Frame]:
        if sample is None:
            return [Frame(STACK_LOST, "", 0)]
        if sample.flags & SAMPLE_UNREGISTERED:
            return [Frame(UNREGISTERED, "", 0)]
        return stack_frames(sample.flags, items(sample), names)

    def lines(self, pid: int, sample: Optional[Sample], indent: str = "    ") -> list[str]:
        """The stack under its event, innermost first."""
        return [indent + (f"{shown(f.function)} ({shown(f.file)}:{f.line})" if f.file else shown(f.function))
                for f in reversed(self.frames(sample))]

    def json(self, pid: int, sample: Optional[Sample]) -> list[dict]:
        return [{"function": f.function, "file": f.file or None, "line": f.line or None}
                for f in reversed(self.frames(sample))]

    def _forget_older(self, limit: int) -> None:
        stale = [key for key in self._session.event_stacks if key[1] < limit]
        for key in stale:
            del self._session.event_stacks[key]


class FoldedEvents:
    """Events aggregated by the stack they fired in: a call tree whose nodes weigh what the
    events weigh: their count (node.samples), or a time (node.self_ns: a pause, an import's)."""

    def __init__(self, stacks: EventStacks, timed: bool):
        self._stacks = stacks
        self.timed = timed
        self.trees: dict[int, CallTree] = {}

    def add(self, pid: int, tid: int, sample: Optional[Sample], weight: int) -> None:
        path = self._stacks.functions(sample)
        tree = self.trees.setdefault(tid, CallTree(pid, tid, Node(None)))
        node = tree.root
        for frame in path:
            node = node.children.setdefault(frame, Node(frame))
        if self.timed:
            node.self_ns += weight
        else:
            node.samples += weight

    def lines(self, per_thread: bool = False) -> list[str]:
        from .render import folded

        return folded(self.trees.values(), "time" if self.timed else "samples", per_thread)


class StackedEvents(Consumer):
    """A command's events, each with the stack it fired in under it (--stacks), or aggregated
    by stack (--folded), written by finish. `header` heads the text stream."""

    header = ""

    def __init__(self, session: Session, out: TextIO, json_output: bool, stacks: bool, folded: bool, timed: bool):
        super().__init__(session)
        self._out = out
        self._json = json_output
        self._stacks = EventStacks(session) if stacks or folded else None
        self._folded = FoldedEvents(self._stacks, timed) if folded else None
        if self.header and not json_output and not folded:
            out.write(self.header + "\n")

    def wrote_folded(self) -> bool:
        """With --folded, the folded stacks written (and True)."""
        if not self._folded:
            return False
        self._out.write("".join(line + "\n" for line in self._folded.lines()))
        self._out.flush()
        return True
