"""`pybpftrace stack`: each thread's calls and returns as they happen (as text, JSON lines, or a
timeline: speedscope, Chrome trace events), or the call tree the kernel keeps (folded stacks,
SVG flame graph, speedscope, pprof)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import BadUsage, TraceError
from ..events import CALL_EVENT, STRING_MAX, CallEvent
from ..formats import TIMELINE, model
from ..formats.options import Outputs
from ..program import Handler, ProgramSpec
from ..progress import size
from ..render import WEIGHTS, JsonRenderer, TextRenderer, weighted_stacks
from ..session import Consumer, Session, Summary, TraceOptions, run_tool, signed_total
from ..stacks import (
    CallTree,
    Creations,
    Frame,
    KernelNode,
    KernelRoot,
    OpenFrame,
    Pairing,
    Spans,
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
    outputs: Outputs = field(default_factory=Outputs)
    folded: bool = False
    weight: str = "time"
    per_thread: bool = False
    durations: bool = False


def function_filter(name: str) -> bytes:
    encoded = name.encode()
    if b"\0" in encoded or len(encoded) >= STRING_MAX:
        raise TraceError(f"--function takes a name of 1 to {STRING_MAX - 1} bytes")
    return encoded


class Stream(Consumer):
    """Writes each event as it arrives, with its call's duration on returns: turns records
    into call events, takes back generator creations where the CPython needs it, applies the
    file name filter, and writes a batch at a time; for timeline outputs, keeps each call as a
    span, written at the end."""

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self._call_event = session.names.call_event
        self._filename = options.filename
        binaries = [b for group in session.targets.binaries.values() for b in group]
        needs = any(b.quirks.generator_creation_marker for b in binaries)
        self._creations = Creations() if needs else None
        self._pairing = Pairing()
        self._outputs = options.outputs
        self._own = []
        for output in options.outputs.own():
            renderer = (JsonRenderer if output.format == "json" else TextRenderer)(session.start, options.durations)
            self._own.append((renderer, output.text()))
            output.text().write(renderer.header)
        self.writes_stdout = any(output.path is None for output in options.outputs.own())
        self._spans = None
        if options.outputs.taking(TIMELINE):
            self._sources = session.sources
            self._spans = Spans(model.Timeline(), session.start, self._frame,
                                lambda pid, tid: model.Thread(pid, tid, session.thread_name(pid, tid)))
        self._frames: dict[tuple[int, str, str, int], model.Frame] = {}

    def _frame(self, event: CallEvent) -> model.Frame:
        """The event's function, by its first line (a generator resumes at another line)."""
        key = (event.pid, event.function, event.file, event.line)
        frame = self._frames.get(key)
        if frame is None:
            line = self._sources.resolve(event.pid, event.file, event.function, event.line)
            frame = self._frames[key] = model.Frame(event.function, event.file, event.line if line is None else line)
        return frame

    def feed(self, records: list[tuple]) -> None:
        events = map(self._call_event, records)
        if self._creations:
            events = (kept for event in events for kept in self._creations.feed(event))
        self._write(events)

    def finish(self, summary: Summary) -> None:
        if self._creations:
            self._write(self._creations.flush())
        if self._spans:
            timeline = self._spans.finish(round(summary.seconds * 1e9))
            timeline.meta = self.session.meta(summary)
            self._outputs.write_timeline(timeline)

    def writing(self) -> str:
        parts = [f"{output.describe()} ({size(output.written())})" for output in self._outputs.own() if output.path]
        held = f" ({len(self._spans.timeline):,} calls held)" if self._spans else ""
        parts += [f"{output.describe()} at the end{held}" for output in self._outputs.taking(TIMELINE)]
        return ", ".join(parts)

    def _write(self, events) -> None:
        shown = []
        pair, threads, filename, spans = self._pairing.feed, self.threads, self._filename, self._spans
        for event in events:
            threads.add(event.tid)
            if filename is None or filename in event.file:
                shown.append((event, *pair(event)))
                if spans:
                    spans.feed(event)
        for renderer, out in self._own:
            line = renderer.line
            out.write("".join([line(event, indent, duration) for event, indent, duration in shown]))
            out.flush()


class Fold(Consumer):
    """Reads the call tree the kernel kept, at the end, and prints it as folded stacks."""

    writes_stdout = False

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self.sources = session.sources
        self._options = options

    def finish(self, summary: Summary) -> None:
        trees = self.read(self.session.start + int(summary.seconds * 1e9))
        self.threads = set(trees)
        summary.threads = len(trees)
        for tree in trees.values():
            if tree.pid not in self.sources:
                self.sources.watch(tree.pid)  # a process found by --binary or --all
        meta = self.session.meta(summary)
        weighings = [
            weighted_stacks(trees, weight, self._options.per_thread, self.sources, folded_view(self._options), meta,
                            self.session.thread_name)
            for weight in [self._options.weight] + [w for w in WEIGHTS if w != self._options.weight]
        ]
        self._options.outputs.write_stacks(weighings[0], also=weighings[1:])

    def writing(self) -> str:
        return ", ".join(f"{output.describe()} at the end" for output in self._options.outputs.items)

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


FOLDED_ONLY = {"folded", "svg", "pprof"}  # drawn from the call tree the kernel keeps
STREAM_ONLY = {"json", "chrome"}  # drawn from every event


def choose_mode(options: StackOptions) -> bool:
    """Whether to keep the call tree in the kernel (--folded, or an output only it makes); in
    that mode the text output is folded stacks."""
    formats = options.outputs.formats()
    folded = options.folded or bool(formats & FOLDED_ONLY)
    if not folded:
        return False
    if options.folded and "json" in formats:
        raise BadUsage("--folded and --json do not go together")
    streamed = formats & STREAM_ONLY
    if streamed:
        kept = ", ".join(sorted(formats & FOLDED_ONLY)) or "--folded"
        raise BadUsage(f"{', '.join(sorted(streamed))} come from the streamed trace and {kept} from the "
                       "folded one: trace once for each")
    for output in options.outputs.items:
        if output.format == "text":
            output.format = "folded"
    return True


def run(options: StackOptions) -> int:
    if options.function is not None:
        function_filter(options.function)
    if choose_mode(options):
        return run_tool("stack", FOLDED_SPEC, None, options.trace, lambda s: Fold(s, options),
                        lambda s: configure_folded(s, options))
    return run_tool("stack", SPEC, CALL_EVENT, options.trace, lambda s: Stream(s, options),
                    lambda s: configure(s, options))
