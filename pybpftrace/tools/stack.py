"""`pybpftrace stack`: each thread's calls and returns as they happen (as text, JSON lines, or a
timeline: speedscope, Chrome trace events), or the call tree the kernel keeps (folded stacks,
SVG flame graph, speedscope, pprof)."""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Hashable, Optional

from ..errors import BadUsage
from ..events import (
    CALL_EVENT,
    CallEvent,
    COUNTER_DEEP_CALLS,
    COUNTER_ENDED_FULL,
    COUNTER_NODES_FULL,
    COUNTER_PATHS_LOST,
    COUNTER_ROOTS_FULL,
    COUNTER_THREADS_FULL,
    STRING_MAX,
    UNKNOWN_NAME,
    Process,
)
from ..formats import TIMELINE, model
from ..formats.options import Outputs
from ..program import Handler, Loss, ProgramSpec
from ..progress import size
from ..render import CACHED, WEIGHTS, JsonRenderer, TextRenderer, weighted_stacks
from ..consumer import SourcesConsumer, Summary
from ..session import Session, TraceOptions, run_tool, signed_total
from ..stacks import (
    DEEPER_FRAMES,
    MAX_FRAMES,
    PATHS_NOT_KEPT,
    CallTree,
    Creations,
    Frame,
    KernelNode,
    KernelRoot,
    OpenFrame,
    OpenThread,
    Pairing,
    Spans,
    build_call_trees,
)
from ..target import SYSTEM_WIDE

THREADS_FULL = "{n} events of threads beyond {%s} live ones dropped: the %s map was full"
SPEC = ProgramSpec(
    "stack.bpf.c",
    (
        ("function__return", Handler("on_function_return", 3)),
        ("function__entry", Handler("on_function_entry", 3)),
    ),
    markers=(("_Py_MakeCoro", Handler("on_generator_created", 3)),),  # no arguments: zeros
    names_layout=True,
    losses=(Loss(COUNTER_THREADS_FULL, THREADS_FULL % ("threads", "threads"), dropped=True),),
)
FOLDED_SPEC = ProgramSpec(  # the tree kept in the kernel
    "folded.bpf.c", SPEC.handlers, SPEC.markers, names_layout=True,
    losses=(
        Loss(COUNTER_THREADS_FULL, THREADS_FULL % ("thread_frames", "thread_frames"), dropped=True),
        Loss(COUNTER_DEEP_CALLS, f"{{n}} calls deeper than {MAX_FRAMES} frames, shown as one frame under the "
             f"{MAX_FRAMES}th: {DEEPER_FRAMES.function}"),
        Loss(COUNTER_NODES_FULL, f"{{n}} calls shown as {PATHS_NOT_KEPT.function}: the nodes map ({{nodes}} call "
             "paths) was full, or the kernel out of memory"),
        Loss(COUNTER_PATHS_LOST, "{n} calls not counted: the nodes and lost_paths maps were full", dropped=True),
        Loss(COUNTER_ROOTS_FULL, "{n} threads without a root: the roots map ({roots}) was full (their calls are "
             "shown under [root not kept])"),
        Loss(COUNTER_ENDED_FULL, "{n} threads exited with calls open whose time up to their exit is not counted: "
             "the ended_frames map ({ended_frames}) was full"),
    ),
)


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
    if not encoded or b"\0" in encoded or len(encoded) >= STRING_MAX:
        raise BadUsage(f"--function takes a name of 1 to {STRING_MAX - 1} bytes, without NUL")
    return encoded


class Stream(SourcesConsumer):
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
        self._first_lines: dict[tuple, Optional[int]] = {}
        self._pairing = Pairing()
        self._reused = 0  # threads whose id an earlier thread had
        self._outputs = options.outputs
        self._own = []
        for output in options.outputs.own():
            if output.format == "json":
                renderer = JsonRenderer(session.start, options.durations)
            else:
                renderer = TextRenderer(session.start, options.durations, pids=many_processes(session),
                                        first_line=self._first_line)
            self._own.append((renderer, output.text()))
            output.text().write(renderer.header)
        self.writes_stdout = any(output.path is None for output in options.outputs.own())
        self._spans = None
        if options.outputs.taking(TIMELINE):
            self._spans = Spans(model.Timeline(), session.start, self._frame,
                                lambda pid, tid: model.Thread(pid, tid, session.thread_name(pid, tid)))
        self._frames: dict[tuple[int, str, str, int], model.Frame] = {}

    def _frame(self, event: CallEvent) -> model.Frame:
        """The event's function, by its first line (a generator resumes at another line)."""
        key = (event.pid, event.function, event.file, event.line)
        frame = self._frames.get(key)
        if frame is None:
            line = self._first_line(event)
            frame = self._frames[key] = model.Frame(event.function, event.file, event.line if line is None else line)
        return frame

    def feed(self, records: list[tuple]) -> None:
        events = map(self._call_event, records)
        if self._creations:
            events = (kept for event in events for kept in self._creations.feed(event))
        self._write(events)

    def on_exits(self, processes: set[Process]) -> None:
        self._pairing.forget({pid for pid, _ in processes})
        self._first_lines.clear()
        super().on_exits(processes)

    def thread_count(self) -> int:
        return len(self.threads) + self._reused

    def finish(self, summary: Summary) -> None:
        if self._creations:
            self._write(self._creations.flush())
        if self._spans:
            timeline = self._spans.finish(round(summary.seconds * 1e9))
            timeline.meta = self.session.meta(summary)
            # named as they came, by their OS names: now by Python's where they still run
            timeline.threads = {tid: model.Thread(thread.pid, tid, self.session.thread_name(thread.pid, tid))
                                for tid, thread in timeline.threads.items()}
            timeline.processes = {pid: self.session.os_thread_name(pid, pid)
                                  for pid in {thread.pid for thread in timeline.threads.values()}}
            self._outputs.write_timeline(timeline)

    def writing(self) -> str:
        parts = [f"{output.describe()} ({size(output.written())})" for output in self._outputs.own() if output.path]
        held = f" ({len(self._spans.timeline):,} calls held)" if self._spans else ""
        parts += [f"{output.describe()} at the end{held}" for output in self._outputs.taking(TIMELINE)]
        return ", ".join(parts)

    def _first_line(self, event: CallEvent) -> Optional[int]:
        """The first line of the function a call event is in, from its source (None where the
        source does not tell)."""
        key = (event.pid, event.file, event.function, event.line)
        if key not in self._first_lines:
            if len(self._first_lines) >= CACHED:
                self._first_lines.clear()
            self._first_lines[key] = self.sources.resolve(event.pid, event.file, event.function, event.line)
        return self._first_lines[key]

    def _write(self, events) -> None:
        shown = []
        pair, threads, filename, spans = self._pairing.feed, self.threads, self._filename, self._spans
        for event in events:
            if event.fresh and event.tid in threads:
                self._reused += 1
            threads.add(event.tid)
            if filename is None or filename in event.file:
                shown.append((event, *pair(event)))
                if spans:
                    spans.feed(event)
        for renderer, out in self._own:
            line = renderer.line
            out.write("".join([line(event, indent, duration) for event, indent, duration in shown]))
            out.flush()


def many_processes(session: Session) -> bool:
    """Whether events can come from more than one process (text output then shows PIDs)."""
    return session.follow_forks or len(session.targets.binaries) > 1 or SYSTEM_WIDE in session.targets.binaries


class Fold(SourcesConsumer):
    """Reads the call tree the kernel kept and prints it as folded stacks at the end: an exited
    process's part as soon as it has exited (its entries then leave the kernel's maps, and its
    names the tracer's memory), the rest at the end."""

    writes_stdout = False

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._weights = [options.weight] + [w for w in WEIGHTS if w != options.weight]
        self._stacks: list[Optional[model.Stacks]] = [None] * len(self._weights)  # by weight
        self._thread_count = 0
        self._unknown = 0  # call paths whose names were never sent

    def on_exits(self, processes: set[Process]) -> None:
        self._fold(self.take(processes))
        super().on_exits(processes)

    def thread_count(self) -> int:
        return self._thread_count

    def finish(self, summary: Summary) -> None:
        self._fold(self.take(None, end=self.session.start + int(summary.seconds * 1e9)))
        if self._unknown:
            summary.notes.append(f"{self._unknown} call paths named {UNKNOWN_NAME}: their names were never sent "
                                 "(the names ring buffer was full)")
        meta = self.session.meta(summary)
        for stacks in self._stacks:
            stacks.meta = meta
        self._options.outputs.write_stacks(self._stacks[0], also=self._stacks[1:])

    def writing(self) -> str:
        return ", ".join(f"{output.describe()} at the end" for output in self._options.outputs.items)

    def _fold(self, trees: list[CallTree]) -> None:
        """Add trees (an exited process's, or the rest at the end) to the stacks kept, each weighed."""
        self._thread_count += sum(1 for tree in trees if tree.tid is not None)
        for index, weight in enumerate(self._weights):
            self._stacks[index] = weighted_stacks(
                trees, weight, self._options.per_thread, self.sources, folded_view(self._options),
                thread_names=self.session.thread_name, into=self._stacks[index])

    def take(self, processes: Optional[set[Process]], end: int = 0) -> list[CallTree]:
        """The call trees the kernel kept for these processes, which have exited, taken out of
        its maps; None: of every process, at the end (`end`, up to which the calls still
        running are charged)."""
        program = self.session.program
        taken: dict[str, list[bytes]] = defaultdict(list)
        kernel_nodes = self._nodes(processes, taken)
        kernel_roots: dict[int, KernelRoot] = {}
        leaf = program.table("roots").Leaf
        for key, raw in program.entries("roots"):
            if processes is not None and ROOT_PROCESS.unpack_from(raw) not in processes:
                continue  # (a look at two fields: the maps of every Python there is, with --all)
            root = leaf.from_buffer_copy(raw)
            taken["roots"].append(key)
            frame = self._frame(root, entered=False) if root.file or root.function else None
            kernel_roots[_id(key)] = KernelRoot(root.parent, frame, root.self, root.pid, root.tid)
        leaf = program.table("ended_frames").Leaf
        open_threads = []
        for key, raw in program.entries("ended_frames"):
            if _id(key) in kernel_roots:
                taken["ended_frames"].append(key)
                frames = leaf.from_buffer_copy(raw)
                open_threads.append(_open_thread(frames, frames.ended))
        if processes is None:
            leaf = program.table("thread_frames").Leaf
            open_threads += [_open_thread(leaf.from_buffer_copy(raw), end)
                             for _, raw in program.entries("thread_frames")]
        else:
            for name, keys in taken.items():
                program.delete(name, keys)
        return build_call_trees(kernel_nodes, kernel_roots, open_threads)

    def _nodes(self, processes: Optional[set[Process]], taken: dict[str, list[bytes]]) -> dict[Hashable, KernelNode]:
        """The call paths (and lost paths) of these processes (None: all)."""
        program = self.session.program
        found: dict[Hashable, KernelNode] = {}
        for name in ("nodes", "lost_paths"):
            leaf = program.table(name).Leaf
            for key, raw in program.entries(name):
                if processes is not None and NODE_PROCESS.unpack_from(raw) not in processes:
                    continue
                node = leaf.from_buffer_copy(raw)
                taken[name].append(key)
                calls = signed_total([node.calls])  # a generator's creation is taken back: can go below 0
                if name == "lost_paths":
                    found[_lost(_id(key))] = KernelNode(node.parent, PATHS_NOT_KEPT, node.self, calls, node.pid)
                else:
                    frame = DEEPER_FRAMES if node.line == DEEPER_FRAMES_LINE else self._frame(node)
                    found[_id(key)] = KernelNode(node.parent, frame, node.self, calls, node.pid)
        return found

    def _frame(self, record, entered: bool = True) -> Frame:
        """The frame of a node or a root, names resolved."""
        file_name, function_name = self.session.names.get(record.pid, record.incarnation, record.file,
                                                          record.function)
        if UNKNOWN_NAME in (file_name, function_name):
            self._unknown += 1
        return Frame(function_name, file_name, record.line, entered)


NODE_PROCESS = struct.Struct("<40xI4xI")  # struct call_node's pid and incarnation
ROOT_PROCESS = struct.Struct("<32xI8xI")  # struct call_root's
DEEPER_FRAMES_LINE = -(2**31)  # bpf/folded.bpf.c: the line of the node of calls deeper than MAX_FRAMES
PATH_LOST = 1  # bpf/folded.bpf.c: a frame whose path is a lost path


def _id(key: bytes) -> int:
    return int.from_bytes(key, "little")


def _lost(ancestor: int) -> Hashable:
    """The id of the lost paths under a node: apart from the node's own, which is the key."""
    return ("lost", ancestor)


def _open_thread(frames, end: int) -> OpenThread:
    """A thread's stack (struct frames) at an end: its open calls."""
    kept = max(0, min(frames.depth, MAX_FRAMES))
    open_frames = [OpenFrame(_lost(f.node_id) if f.pad == PATH_LOST else f.node_id, f.start, f.callees)
                   for f in frames.stack[:kept]]
    deep = None
    if frames.depth > MAX_FRAMES:
        deepest = frames.stack[MAX_FRAMES - 1]
        node = _lost(deepest.node_id) if deepest.pad == PATH_LOST or not frames.deep_node else frames.deep_node
        deep = (node, frames.deep_since)
    return OpenThread(frames.root, frames.idle, open_frames, end, deep)


def folded_view(options: StackOptions):
    """--function, --filename and --max-depth applied to the paths of the folded tree: what a
    view hides counts toward the frames it shows."""

    def view(path: list[Frame]) -> Optional[list[Frame]]:
        if options.function is not None:
            starts = [i for i, frame in enumerate(path) if frame.function == options.function]
            if not starts:
                return None
            path = path[starts[0]:]
        if options.filename is not None:  # what stands for calls not kept apart stays
            path = [frame for frame in path if options.filename in frame.file or frame.synthetic]
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
