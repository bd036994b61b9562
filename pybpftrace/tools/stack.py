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
from ..session import Session, Targets, find_targets, flush_stdout_quietly, require_privileges
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
    pids: list[int] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    function: Optional[str] = None
    filename: Optional[str] = None
    max_depth: int = 0
    tids: list[int] = field(default_factory=list)
    duration: Optional[float] = None
    output: Optional[TextIO] = None
    json: bool = False
    folded: bool = False
    weight: str = "time"
    per_thread: bool = False
    durations: bool = False
    buffer_mib: float = 16
    follow_forks: bool = False


def function_filter(name: str) -> bytes:
    encoded = name.encode()
    if b"\0" in encoded or len(encoded) >= STRING_MAX:
        raise TraceError(f"--function takes a name of 1 to {STRING_MAX - 1} bytes")
    return encoded


class Consumer:
    """Turns records into events, takes back generator creations where the CPython needs it,
    applies the file name filter, and hands each event to `handle`."""

    def __init__(self, session: Session, options: StackOptions):
        self._call_event = session.names.call_event
        self._filename = options.filename
        binaries = [b for group in session.targets.binaries.values() for b in group]
        self._creations = Creations() if any(b.quirks.generator_creation_marker for b in binaries) else None
        self.threads: set[int] = set()

    def feed(self, records: list[tuple]) -> None:
        for record in records:
            event = self._call_event(record)
            self.threads.add(event.tid)
            self._pass(self._creations.feed(event) if self._creations else (event,))

    def finish(self) -> None:
        if self._creations:
            self._pass(self._creations.flush())

    def _pass(self, events) -> None:
        for event in events:
            if self._filename is None or self._filename in event.file:
                self.handle(event)

    def handle(self, event: CallEvent) -> None:
        raise NotImplementedError

    def on_fork(self, pid: int) -> None:
        """A child is traced from now on."""


class Stream(Consumer):
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

    def handle(self, event: CallEvent) -> None:
        self._renderer.event(event, *self._pairing.feed(event))


class Fold(Consumer):
    """Builds call trees to print as folded stacks at the end."""

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session, options)
        self.trees = CallTrees(session.start)
        self.sources = FirstLines()
        launched = session.targets.launched
        for pid in session.targets.pids:
            if launched and pid == launched.pid:
                self.sources.watch(pid, root="/", cwd=os.getcwd())
            else:
                self.sources.watch(pid)

    def handle(self, event: CallEvent) -> None:
        self.trees.feed(event)

    def on_fork(self, pid: int) -> None:
        self.sources.watch(pid)


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
    require_privileges("pybpftrace stack")
    if options.function is not None:
        function_filter(options.function)
    targets: Targets = find_targets(options.pids, options.command, "stack")
    launched = targets.launched
    try:
        session = Session(SPEC, targets, "events", CALL_EVENT, options.buffer_mib, options.follow_forks)
        configure(session, options)
        session.attach()
    except BaseException:
        if launched:
            launched.abandon()
        raise
    out = options.output or sys.stdout
    consumer = Fold(session, options) if options.folded else Stream(session, options, out)
    try:
        summary = session.run(consumer.feed, options.duration, consumer.on_fork)
    except BrokenPipeError:
        flush_stdout_quietly()
        return 0
    finally:
        session.close()
    consumer.finish()
    if isinstance(consumer, Fold):
        consumer.trees.finish(session.start + int(summary.seconds * 1e9))
        stacks = folded(consumer.trees.threads, options.weight, options.per_thread, consumer.sources)
        consumer.sources.close()
        out.write("".join(line + "\n" for line in stacks))
        out.flush()
    print(summary.line(len(consumer.threads)), file=sys.stderr)
    return launched.wait() if launched else 0
