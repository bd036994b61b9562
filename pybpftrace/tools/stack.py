"""`pybpftrace stack`: each thread's calls and returns as they happen, or folded stacks."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional, TextIO

from ..errors import BadUsage
from ..events import CALL_EVENT, STRING_MAX
from ..program import Handler, ProgramSpec
from ..render import JsonRenderer, TextRenderer, folded
from ..session import Consumer, Session, Summary, TraceOptions, run_tool, signed_total
from ..sources import FirstLines
from ..stacks import (
    CallTree,
    Creations,
    Frame,
    KernelNode,
    KernelRoot,
    OpenFrame,
    Pairing,
    build_call_trees,
)

MAX_FRAMES = 128  # bpf/frames.h: deeper calls are counted, not timed

SPEC = ProgramSpec(
    "stack.bpf.c",
    (
        ("function__return", Handler("on_function_return", 3)),
        ("function__entry", Handler("on_function_entry", 3)),
    ),
    markers=(("_Py_MakeCoro", Handler("on_generator_created", 3)),),  # no arguments: zeros
)
FOLDED_SPEC = ProgramSpec("folded.bpf.c", SPEC.handlers, SPEC.markers)  # the tree kept in the kernel


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
    if not encoded or b"\0" in encoded or len(encoded) >= STRING_MAX:
        raise BadUsage(f"--function takes a name of 1 to {STRING_MAX - 1} bytes, without NUL")
    return encoded


class Stream(Consumer):
    """Writes each event as it arrives, with its call's duration on returns: turns records
    into call events, takes back generator creations where the CPython needs it, applies the
    file name filter, and writes a batch at a time."""

    def __init__(self, session: Session, options: StackOptions, out: TextIO):
        super().__init__(session)
        self._call_event = session.names.call_event
        self._filename = options.filename
        binaries = [b for group in session.targets.binaries.values() for b in group]
        needs = any(b.quirks.generator_creation_marker for b in binaries)
        self._creations = Creations() if needs else None
        renderer = JsonRenderer if options.json else TextRenderer
        self._renderer = renderer(session.start, options.durations)
        self._pairing = Pairing()
        self._out = out
        out.write(self._renderer.header)

    def feed(self, records: list[tuple]) -> None:
        events = map(self._call_event, records)
        if self._creations:
            events = (kept for event in events for kept in self._creations.feed(event))
        self._write(events)

    def finish(self, summary: Summary) -> None:
        if self._creations:
            self._write(self._creations.flush())

    def _write(self, events) -> None:
        lines = []
        line, pair, threads, filename = self._renderer.line, self._pairing.feed, self.threads, self._filename
        for event in events:
            threads.add(event.tid)
            if filename is None or filename in event.file:
                lines.append(line(event, *pair(event)))
        self._out.write("".join(lines))
        self._out.flush()


class Fold(Consumer):
    """Reads the call tree the kernel kept, at the end, and prints it as folded stacks."""

    def __init__(self, session: Session, options: StackOptions, out: TextIO):
        super().__init__(session)
        self.sources = FirstLines()
        self._options = options
        self._out = out
        launched = session.targets.launched
        for pid in session.targets.pids:
            if launched and pid == launched.pid:
                self.sources.watch(pid, root="/", cwd=os.getcwd())
            else:
                self.sources.watch(pid)

    def on_fork(self, pid: int) -> None:
        self.sources.watch(pid)

    def finish(self, summary: Summary) -> None:
        trees = self.read(self.session.start + int(summary.seconds * 1e9))
        self.threads = set(trees)
        summary.threads = len(trees)
        for tree in trees.values():
            if tree.pid not in self.sources:
                self.sources.watch(tree.pid)  # a process found by --binary or --all
        stacks = folded(trees, self._options.weight, self._options.per_thread, self.sources,
                        folded_view(self._options))
        self.sources.close()
        self._out.write("".join(line + "\n" for line in stacks))
        self._out.flush()

    def read(self, end: int) -> dict[int, CallTree]:
        program, names = self.session.program, self.session.names

        def frame(pid: int, file: int, function: int, line: int, entered: bool = True) -> Frame:
            file_name, function_name = names.get(pid, file, function)
            return Frame(function_name, file_name, line, entered)

        kernel_nodes = {}
        for key, per_cpu in program.table("nodes").items():
            # the CPU that made it holds its parent and names; the others count calls and time
            node = next(n for n in per_cpu if n.parent)
            kernel_nodes[key.value] = KernelNode(
                node.parent, frame(node.pid, node.file, node.function, node.line),
                sum(n.self for n in per_cpu), signed_total(n.calls for n in per_cpu), node.pid,
            )
        kernel_roots = {
            key.value: KernelRoot(
                root.parent,
                frame(root.pid, root.file, root.function, root.line, entered=False)
                if root.file or root.function else None,
                root.self, root.pid, root.tid,
            )
            for key, root in program.table("roots").items()
        }
        running = {}
        for tid, frames in program.table("thread_frames").items():
            depth = max(0, min(frames.depth, MAX_FRAMES))
            open_frames = [OpenFrame(f.node_id, f.start, f.callees) for f in frames.stack[:depth]]
            running[tid.value] = (frames.root, frames.idle, open_frames)
        return build_call_trees(kernel_nodes, kernel_roots, running, end)


def folded_view(options: StackOptions):
    """--function, --filename and --max-depth applied to the paths of the folded tree: what a
    view hides counts toward the frames it shows."""

    def view(path: list[Frame]) -> Optional[list[Frame]]:
        if options.function is not None:
            starts = [i for i, frame in enumerate(path) if frame.function == options.function]
            if not starts:
                return None
            path = path[starts[0]:]
        if options.filename is not None:
            path = [frame for frame in path if options.filename in frame.file]
        if options.max_depth:
            path = path[: options.max_depth]
        return path

    return view


def configure(session: Session, options: StackOptions) -> None:
    """Filters go to the kernel through maps, never into the program's source."""
    settings = session.program.table("settings")
    value = settings.Leaf()
    value.max_depth = options.max_depth
    value.only_tids = bool(options.tids)
    binaries = [b for group in session.targets.binaries.values() for b in group]
    value.check_returns = any(b.quirks.returns_without_entry for b in binaries)
    if options.function is not None:
        value.only_function = 1
        value.function = function_filter(options.function)
    settings[settings.Key(0)] = value
    tids = session.program.table("tids")
    for tid in options.tids:
        tids[tids.Key(tid)] = tids.Leaf(1)


def configure_folded(session: Session, options: StackOptions) -> None:
    only = session.program.table("only_tids")
    only[only.Key(0)] = only.Leaf(int(bool(options.tids)))
    tids = session.program.table("tids")
    for tid in options.tids:
        tids[tids.Key(tid)] = tids.Leaf(1)


def run(options: StackOptions) -> int:
    if options.function is not None:
        function_filter(options.function)
    out = options.output or sys.stdout

    if options.folded:
        return run_tool("stack", FOLDED_SPEC, None, options.trace, lambda s: Fold(s, options, out),
                        lambda s: configure_folded(s, options))
    return run_tool("stack", SPEC, CALL_EVENT, options.trace, lambda s: Stream(s, options, out),
                    lambda s: configure(s, options))
