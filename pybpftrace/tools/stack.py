"""`pybpftrace stack`: each thread's calls and returns as they happen (as text, JSON lines, or a
timeline: speedscope, Chrome trace events), or the call tree the kernel keeps (folded stacks,
SVG flame graph, speedscope, pprof). Either way each thread starts at its real root: the frames
it was in when first seen are read from memory first."""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Hashable, Iterator, Optional

from ..codes import UNANNOUNCED_CODE, UNKNOWN_CODE, Code
from ..consumer import Consumer, Summary
from ..errors import BadUsage
from ..events import (
    CALL_EVENT,
    CALL_FRESH,
    CallEvent,
    COUNTER_DEEP_CALLS,
    COUNTER_ENDED_FULL,
    COUNTER_EVENTS_LOST,
    COUNTER_NODES_FULL,
    COUNTER_PATHS_LOST,
    COUNTER_ROOTS_FULL,
    COUNTER_THREADS_FULL,
    EVENT_CALL,
    STRING_MAX,
    Process,
)
from ..formats import TIMELINE, model
from ..formats.options import Output, Outputs, output_failed
from ..program import Handler, Loss, ProgramSpec
from ..progress import size
from ..render import WEIGHTS, JsonRenderer, TextRenderer, weighted_stacks
from ..samples import unpack
from ..sampling import Sampling
from ..session import Session, TraceOptions, run_tool, signed_total
from ..spool import Spool
from ..stacks import (
    CALL_SEEDED,
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
from .follow import CALL_LOSSES, code_frame, follows_calls, forget_codes

THREADS_FULL = "{n} events of threads beyond {thread_frames} live ones dropped: the thread_frames map was full"
SPEC = follows_calls(ProgramSpec(
    "stack.bpf.c", (), losses=(Loss(COUNTER_THREADS_FULL, THREADS_FULL, dropped=True), *CALL_LOSSES)))
FOLDED_SPEC = follows_calls(ProgramSpec(  # the tree kept in the kernel
    "folded.bpf.c", (),
    losses=(
        Loss(COUNTER_THREADS_FULL, THREADS_FULL, dropped=True),
        Loss(COUNTER_DEEP_CALLS, f"{{n}} calls deeper than {MAX_FRAMES} frames, under one frame below the "
             f"{MAX_FRAMES}th: {DEEPER_FRAMES.function} (counted by function below it, timed as one)"),
        Loss(COUNTER_NODES_FULL, f"{{n}} calls shown as {PATHS_NOT_KEPT.function}: the nodes map ({{nodes}} call "
             "paths) was full, or the kernel out of memory"),
        Loss(COUNTER_PATHS_LOST, "{n} calls not counted: the nodes and lost_paths maps were full", dropped=True),
        Loss(COUNTER_ROOTS_FULL, "{n} threads without a root: the roots map ({roots}) was full (their calls are "
             "shown under [root not kept])"),
        Loss(COUNTER_ENDED_FULL, "{n} threads exited with calls open whose time up to their exit is not counted: "
             "the ended_frames map ({ended_frames}) was full"),
        *CALL_LOSSES,
    ),
))


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


class Seeds:
    """The frames each thread was in when first seen (bpf/frame_events.h sends them ahead of
    its first event, on the stacks ring), as call events: outermost first, each at the line it
    was running, flagged CALL_SEEDED. --function and --max-depth apply to them as the kernel
    applies them to the events that follow."""

    def __init__(self, session: Session, function: Optional[str], max_depth: int):
        self._session = session
        self._function = function
        self._max_depth = max_depth

    def before(self, event: CallEvent) -> list[CallEvent]:
        record = self._session.event_stacks.pop((event.tid, event.timestamp), None)
        if record is None:
            return []
        sample = unpack(record)
        frames = list(reversed(sample.frames[sample.weight:]))  # outermost first, the entering frame left out
        codes = self._session.codes
        seeded = []
        for depth, (code_id, instruction) in enumerate(frames):
            code = codes.get(code_id) if code_id else None
            function = code.function if code else UNKNOWN_CODE if not code_id else UNANNOUNCED_CODE
            line = (code.line(instruction) or 0) if code else 0
            seeded.append(CallEvent(event.timestamp, event.pid, event.tid, EVENT_CALL, depth, function,
                                    code.file if code else "", line, code.first_line if code else 0,
                                    CALL_SEEDED | (CALL_FRESH if depth == 0 else 0), code_id, event.incarnation))
        if self._function is not None:
            starts = [index for index, call in enumerate(seeded) if call.function == self._function]
            seeded = [call._replace(depth=call.depth - starts[0]) for call in seeded[starts[0]:]] if starts else []
        if self._max_depth:
            seeded = [call for call in seeded if call.depth < self._max_depth]
        return seeded


SPOOL_BATCH = 4096  # records rendered at a time from the spool
CATCH_UP_SECONDS = 0.02  # rendering between reads of the ring: far less than the ring takes to fill


class Stream(Consumer):
    """Writes each event as it arrives, with its call's duration on returns: turns records
    into call events (each thread's first preceded by the frames it was in), takes back
    generator creations where the CPython needs it, applies the file name filter, and writes
    a batch at a time; for timeline outputs, keeps each call as a span, written at the end.

    Written to files (or a pipe), the records are copied off the ring into a spool as they come
    and rendered from it as time allows, so that however fast they come none is lost to a
    renderer that could not keep up; the files then say where the kernel dropped events all the
    same. A terminal (a person reads it as it comes) and JSON lines (which read each new
    thread's namespace TID while it runs) are rendered as the records come."""

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self._call_event = session.codes.call_event
        self._filename = options.filename
        self._seeds = Seeds(session, options.function, options.max_depth)
        binaries = [b for group in session.targets.binaries.values() for b in group]
        needs = any(b.quirks.generator_creation_marker for b in binaries)
        self._creations = Creations() if needs else None
        self._pairing = Pairing()
        self._reused = 0  # threads whose id an earlier thread had
        self._outputs = options.outputs
        self._own = []
        for output in options.outputs.own():
            if output.format == "json":
                renderer = JsonRenderer(session.start, options.durations)
            else:
                renderer = TextRenderer(session.start, options.durations, pids=many_processes(session))
            self._own.append((renderer, output.text()))
            output.text().write(renderer.header)
        self.writes_stdout = any(output.path is None for output in options.outputs.own())
        self._spans = None
        if options.outputs.taking(TIMELINE):
            self._spans = Spans(model.Timeline(spill_to=_spool_directory(options.outputs)), session.start, _model_frame,
                                lambda pid, tid: model.Thread(pid, tid, session.thread_name(pid, tid)))
        self._spool: Optional[Spool] = None
        self._lost = 0  # events the kernel dropped, as last marked in the spool
        if not any(output.format == "json" or _on_terminal(output) for output in options.outputs.own()):
            self._spool = Spool(session.rings.events.records, _spool_directory(options.outputs))
            self.copies_records = True

    def feed(self, records: list[tuple]) -> None:
        events = self._seeded(map(self._call_event, records))
        if self._creations:
            events = (kept for event in events for kept in self._creations.feed(event))
        self._write(events)

    def _seeded(self, events) -> Iterator[CallEvent]:
        """Each thread's first event after the frames it was in (the first of which is then
        the thread's first)."""
        for event in events:
            if event.fresh:
                seeded = self._seeds.before(event)
                if seeded:
                    yield from seeded
                    event = event._replace(flags=event.flags & ~CALL_FRESH)
            yield event

    def feed_copied(self, piece: memoryview) -> None:
        try:
            self._spool.write(piece)
        except OSError as error:  # the spool sits beside an output, on its disk: full, the output is too
            beside = _file_output(self._outputs)
            if beside is None:  # no output is a file: the spool is in the temporary directory
                raise output_failed(f"{self._spool.directory} (where events wait to be written; TMPDIR chooses it)",
                                    error, None) from None
            raise output_failed(beside.path, error, beside) from None

    def catch_up(self) -> bool:
        if not self._spool:
            return False
        self._mark_losses()
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while self._spool.waiting() and time.monotonic() < deadline:
            self.feed(self._spool.read(SPOOL_BATCH))
        return bool(self._spool.waiting())

    def _mark_losses(self) -> None:
        """Where the kernel dropped events (its count grew since the last read of the ring):
        a line in the text, once the events before them are written."""
        lost = self.session.counter(COUNTER_EVENTS_LOST)
        if lost > self._lost:
            self._spool.mark(lambda n=lost - self._lost: self._write_gap(n))
            self._lost = lost

    def _write_gap(self, lost: int) -> None:
        for renderer, out in self._own:
            out.write(renderer.gap(lost))

    def on_exits(self, processes: set[Process]) -> None:
        if self._spool:  # once their events are rendered
            self._spool.mark(lambda: self._forget(processes))
        else:
            self._forget(processes)

    def _forget(self, processes: set[Process]) -> None:
        self._pairing.forget(processes)
        forget_codes(self.session, processes)

    def thread_count(self) -> int:
        return len(self.threads) + self._reused

    def finish(self, summary: Summary) -> None:
        if self._spool:
            self._mark_losses()
            while records := self._spool.read(SPOOL_BATCH):
                self.feed(records)
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
        if self._spool and self._spool.waiting():
            parts.append(f"{self._spool.waiting():,} events read, not yet written")
        held = f" ({len(self._spans.timeline):,} calls held)" if self._spans else ""
        parts += [f"{output.describe()} at the end{held}" for output in self._outputs.taking(TIMELINE)]
        return ", ".join(parts)

    def _write(self, events) -> None:
        shown = []
        pair, threads, filename, spans = self._pairing.feed, self.threads, self._filename, self._spans
        for event in events:
            if event.fresh and event.tid in threads:
                self._reused += 1
            threads.add(event.tid)
            paired = pair(event)
            if filename is None or filename in event.file:
                shown.append((event, paired))
                if spans:
                    spans.feed(event)
        for renderer, out in self._own:
            line = renderer.line
            out.write("".join([line(event, paired) for event, paired in shown]))
            out.flush()

    def close(self) -> None:
        if self._spool:
            self._spool.close()
        if self._spans:
            self._spans.timeline.close()


def _on_terminal(output: Output) -> bool:
    return (sys.stdout if output.path is None else output.stream).isatty()


def _file_output(outputs: Outputs) -> Optional[Output]:
    """The first output that is a regular file (on a disk, not a pipe or /dev/null)."""
    return next((output for output in outputs.items if output.path and os.path.isfile(output.path)), None)


def _spool_directory(outputs: Outputs) -> str:
    """Where records wait to be rendered, and the spans of a long timeline wait to be written:
    beside the first output that is a regular file (on its disk, not in a tmpfs in memory, as
    /dev/null's directory is), else in the temporary directory."""
    beside = _file_output(outputs)
    return os.path.dirname(os.path.abspath(beside.path)) if beside else tempfile.gettempdir()


def _model_frame(event: CallEvent) -> model.Frame:
    """A call's frame in a timeline: its function's first line."""
    return model.Frame(event.function, event.file, event.first_line or event.line)


def many_processes(session: Session) -> bool:
    """Whether events can come from more than one process (text output then shows PIDs)."""
    return session.follow_forks or len(session.targets.binaries) > 1 or SYSTEM_WIDE in session.targets.binaries


class Fold(Consumer):
    """Reads the call tree the kernel kept and prints it as folded stacks at the end: an exited
    process's part as soon as it has exited (its entries then leave the kernel's maps, and its
    code objects the tracer's memory), the rest at the end."""

    writes_stdout = False

    def __init__(self, session: Session, options: StackOptions):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._weights = [options.weight] + [w for w in WEIGHTS if w != options.weight]
        self._stacks: list[Optional[model.Stacks]] = [None] * len(self._weights)  # by weight
        self._thread_count = 0
        self._running = 0  # calls still running at the end (or at their thread's exit)

    def on_exits(self, processes: set[Process]) -> None:
        self._fold(self.take(processes))
        forget_codes(self.session, processes)

    def thread_count(self) -> int:
        return self._thread_count

    def finish(self, summary: Summary) -> None:
        self._fold(self.take(None, end=self.session.start + int(summary.seconds * 1e9)))
        if self._running:
            summary.notes.append(f"{self._running} calls still running when tracing stopped or their thread exited: "
                                 "their time up to then is counted")
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
                trees, weight, self._options.per_thread, folded_view(self._options),
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
            frame = code_frame(self.session.codes, root.code) if root.code else None
            kernel_roots[_id(key)] = KernelRoot(root.parent, frame, root.self, root.pid, root.tid)
        leaf = program.table("ended_frames").Leaf
        open_threads = []
        for key, raw in program.entries("ended_frames"):
            if _id(key) in kernel_roots:
                taken["ended_frames"].append(key)
                frames = leaf.from_buffer_copy(raw)
                open_threads.append(self._open_thread(frames, frames.ended))
        if processes is None:
            leaf = program.table("thread_frames").Leaf
            open_threads += [self._open_thread(leaf.from_buffer_copy(raw), end)
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
                    frame = DEEPER_FRAMES if node.kind == NODE_DEEPER else code_frame(self.session.codes, node.code)
                    found[_id(key)] = KernelNode(node.parent, frame, node.self, calls, node.pid)
        return found

    def _open_thread(self, frames, end: int) -> OpenThread:
        """A thread's stack (struct frames) at an end: its open calls."""
        kept = max(0, min(frames.depth, MAX_FRAMES))
        self._running += max(0, frames.depth)
        open_frames = [OpenFrame(_lost(f.node_id) if f.flags & PATH_LOST else f.node_id, f.start, f.callees)
                       for f in frames.stack[:kept]]
        deep = None
        if frames.depth > MAX_FRAMES:
            deepest = frames.stack[MAX_FRAMES - 1]
            node = _lost(deepest.node_id) if deepest.flags & PATH_LOST or not frames.deep_node else frames.deep_node
            deep = (node, frames.deep_since)
        return OpenThread(frames.root, frames.idle, open_frames, end, deep)


NODE_PROCESS = struct.Struct("<32xII")  # struct call_node's pid and incarnation
ROOT_PROCESS = struct.Struct("<24xI4xI")  # struct call_root's
NODE_DEEPER = 1  # bpf/folded.bpf.c: the node of the calls deeper than MAX_FRAMES
PATH_LOST = 4  # bpf/frames.h FRAME_PATH_LOST: a frame whose path is a lost path


def _id(key: bytes) -> int:
    return int.from_bytes(key, "little")


def _lost(ancestor: int) -> Hashable:
    """The id of the lost paths under a node: apart from the node's own, which is the key."""
    return ("lost", ancestor)


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


FOLLOWING = Sampling(linetables=True)  # code objects come with their line tables: lines from instructions


def run(options: StackOptions) -> int:
    if options.function is not None:
        function_filter(options.function)
    if choose_mode(options):
        return run_tool("stack", FOLDED_SPEC, None, options.trace, lambda s: Fold(s, options),
                        lambda s: configure_folded(s, options), sampling=FOLLOWING)
    return run_tool("stack", SPEC, CALL_EVENT, options.trace, lambda s: Stream(s, options),
                    lambda s: configure(s, options), sampling=FOLLOWING)
