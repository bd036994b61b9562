"""`pybpftrace stack`: each thread's calls and returns as they happen, or folded stacks."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional, TextIO

from ..errors import TraceError
from ..events import CALL_EVENT, STRING_MAX, CallEvent
from ..program import Handler, ProgramSpec
from ..render import JsonRenderer, TextRenderer, folded
from ..session import Consumer, Session, Summary, TraceOptions, run_tool
from ..sources import FirstLines
from ..stacks import CallTrees, Creations, Pairing

SPEC = ProgramSpec(
    "stack.bpf.c",
    (
        ("function__return", Handler("on_function_return", 3)),
        ("function__entry", Handler("on_function_entry", 3)),
    ),
    markers=(("_Py_MakeCoro", Handler("on_generator_created", 3)),),  # no arguments: zeros
)


@dataclass
class StackOptions:
    trace: TraceOptions = field(default_factory=TraceOptions)
    function: Optional[str] = None
    filename: Optional[str] = None
    max_depth: int = 0
    tids: list[int] = field(default_factory=list)
    output: Optional[TextIO] = None
    json: bool = False
    folded: bool = False
    weight: str = "time"
    per_thread: bool = False
    durations: bool = False


def function_filter(name: str) -> bytes:
    encoded = name.encode()
    if b"\0" in encoded or len(encoded) >= STRING_MAX:
        raise TraceError(f"--function takes a name of 1 to {STRING_MAX - 1} bytes")
    return encoded


class CallConsumer(Consumer):
    """Turns records into call events, takes back generator creations where the CPython
    needs it, applies the file name filter, and hands each event to `handle`."""

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self._call_event = session.names.call_event
        self._filename = options.filename
        binaries = [b for group in session.targets.binaries.values() for b in group]
        needs = any(b.quirks.generator_creation_marker for b in binaries)
        self._creations = Creations() if needs else None

    def feed(self, records: list[tuple]) -> None:
        for record in records:
            event = self._call_event(record)
            self.threads.add(event.tid)
            self._pass(self._creations.feed(event) if self._creations else (event,))

    def finish(self, summary: Summary) -> None:
        if self._creations:
            self._pass(self._creations.flush())

    def _pass(self, events) -> None:
        for event in events:
            if self._filename is None or self._filename in event.file:
                self.handle(event)

    def handle(self, event: CallEvent) -> None:
        raise NotImplementedError


class Stream(CallConsumer):
    """Writes each event as it arrives, with its call's duration on returns."""

    def __init__(self, session: Session, options: StackOptions, out: TextIO):
        super().__init__(session, options)
        renderer = JsonRenderer if options.json else TextRenderer
        self._renderer = renderer(out, session.start, options.durations)
        self._pairing = Pairing()
        self._out = out

    def feed(self, records: list[tuple]) -> None:
        super().feed(records)
        self._out.flush()

    def finish(self, summary: Summary) -> None:
        super().finish(summary)
        self._out.flush()

    def handle(self, event: CallEvent) -> None:
        self._renderer.event(event, *self._pairing.feed(event))


class Fold(CallConsumer):
    """Builds call trees, printed as folded stacks at the end."""

    def __init__(self, session: Session, options: StackOptions, out: TextIO):
        super().__init__(session, options)
        self.trees = CallTrees(session.start)
        self.sources = FirstLines()
        self._options = options
        self._out = out
        launched = session.targets.launched
        for pid in session.targets.pids:
            if launched and pid == launched.pid:
                self.sources.watch(pid, root="/", cwd=os.getcwd())
            else:
                self.sources.watch(pid)

    def handle(self, event: CallEvent) -> None:
        if event.pid not in self.sources:
            self.sources.watch(event.pid)  # a process found by --binary or --all
        self.trees.feed(event)

    def on_fork(self, pid: int) -> None:
        self.sources.watch(pid)

    def finish(self, summary: Summary) -> None:
        super().finish(summary)
        self.trees.finish(self.session.start + int(summary.seconds * 1e9))
        stacks = folded(self.trees.threads, self._options.weight, self._options.per_thread, self.sources)
        self.sources.close()
        self._out.write("".join(line + "\n" for line in stacks))
        self._out.flush()


def configure(session: Session, options: StackOptions) -> None:
    """Filters go to the kernel through maps, never into the program's source."""
    settings = session.program.table("settings")
    value = settings.Leaf()
    value.max_depth = options.max_depth
    value.only_tids = bool(options.tids)
    if options.function is not None:
        value.only_function = 1
        value.function = function_filter(options.function)
    settings[settings.Key(0)] = value
    tids = session.program.table("tids")
    for tid in options.tids:
        tids[tids.Key(tid)] = tids.Leaf(1)


def run(options: StackOptions) -> int:
    if options.function is not None:
        function_filter(options.function)
    out = options.output or sys.stdout

    def consumer(session: Session) -> Consumer:
        return Fold(session, options, out) if options.folded else Stream(session, options, out)

    return run_tool("stack", SPEC, CALL_EVENT, options.trace, consumer, lambda s: configure(s, options))
