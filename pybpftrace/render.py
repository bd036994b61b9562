"""Output: the streaming call/return lines (text or JSON), and call trees as weighted stacks
(pybpftrace.formats writes those: folded stacks, flame graphs, profiles)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Callable, Iterable, Optional

from .events import EVENT_CALL, CallEvent
from .formats import model
from .formats.model import format_duration
from .formats.folded import folded_lines
from .sources import FirstLines
from .stacks import CallTree, Frame, Node, nodes, weighted_paths

INDENT = "  "


def unseen_entry(indent: int) -> str:
    """Why a return has no duration: a call that began before tracing returns at the shallowest
    depth so far (indent 0); one below an open call had its entry not seen (lost, or never
    fired: CPython 3.15 resuming a generator in throw())."""
    return "began before tracing" if indent == 0 else "entry not seen"


CACHED = 65536  # labels formatted once and kept, at most (then they start afresh)


FirstLine = Callable[[CallEvent], Optional[int]]


class TextRenderer:
    """`TIME(s) TID  => function (file:line)`, indented by the thread's depth; with pids, a PID
    column before the TID (when more than one process can be traced). A call shows its
    function's first line where first_line finds it: a generator's or coroutine's resumption,
    which reports the line it resumes at, says so."""

    def __init__(self, start: int, durations: bool, pids: bool = False, first_line: FirstLine = lambda event: None):
        self._start = start
        self._durations = durations
        self._pids = pids
        self._first_line = first_line
        self.header = f"{'TIME(s)':>12} {'PID':>8} {'TID':>8}  CALL\n" if pids else f"{'TIME(s)':>12} {'TID':>8}  CALL\n"
        # What repeats, formatted once: this is the streaming hot path.
        self._indents = [INDENT * depth for depth in range(64)]
        self._tids: dict[tuple[int, int], str] = {}
        self._labels: dict[tuple[str, str], str] = {}

    def line(self, event: CallEvent, indent: int, duration: Optional[int]) -> str:
        """The event's line, newline included."""
        tid = self._tids.get((event.pid, event.tid))
        if tid is None:
            if len(self._tids) >= CACHED:
                self._tids.clear()
            text = "%8d %8d  " % (event.pid, event.tid) if self._pids else "%8d  " % event.tid
            tid = self._tids[(event.pid, event.tid)] = text
        label = self._labels.get((event.function, event.file))
        if label is None:
            if len(self._labels) >= CACHED:
                self._labels.clear()
            label = self._labels[(event.function, event.file)] = f"{event.function} ({event.file}:"
        line, resumed = event.line, ""
        if event.kind == EVENT_CALL:
            first = self._first_line(event)
            if first is not None and first != line:
                # CPython 3.15 reports no line (-1) for a closure's entry: no resumption
                line, resumed = first, f" [resumed at line {line}]" if line > 0 else ""
        text = "%12.6f %s%s%s%s%d)%s" % (
            (event.timestamp - self._start) / 1e9,
            tid,
            self._indents[indent] if indent < 64 else INDENT * indent,
            "=> " if event.kind == EVENT_CALL else "<= ",
            label,
            line,
            resumed,
        )
        if self._durations and event.kind != EVENT_CALL:
            text += f" [{format_duration(duration)}]" if duration is not None else f" [{unseen_entry(indent)}]"
        return text + "\n"


class JsonRenderer:
    """One JSON object per event, a line each; depth as the kernel counted it (negative for
    frames that began before tracing)."""

    header = ""

    def __init__(self, start: int, durations: bool):
        self._start = start

    def line(self, event: CallEvent, indent: int, duration: Optional[int]) -> str:
        record = {
            "time": round((event.timestamp - self._start) / 1e9, 9),
            "pid": event.pid,
            "tid": event.tid,
            "event": "call" if event.kind == EVENT_CALL else "return",
            "depth": event.depth,
            "function": event.function,
            "file": event.file,
            "line": event.line,
        }
        if duration is not None:
            record["duration_ns"] = duration
        return json.dumps(record) + "\n"


def _entry_lines(trees: Iterable[CallTree]) -> dict[tuple[str, str], set[int]]:
    lines: dict[tuple[str, str], set[int]] = defaultdict(set)
    for tree in trees:
        for node in nodes(tree.root):
            if node.frame.entered and not node.frame.synthetic:
                lines[(node.frame.file, node.frame.function)].add(node.frame.line)
    return lines


class FrameLabels:
    """Each frame named by its function's first line, so that every call of a function merges:
    fresh calls, generator resumptions (which report the line they resume at) and calls seen
    only returning (which know their return line)."""

    def __init__(self, trees: Iterable[CallTree], sources: Optional[FirstLines]):
        self._entry_lines = _entry_lines(trees)
        self._sources = sources
        self._frames: dict[tuple[int, Frame], model.Frame] = {}

    def _first_line(self, pid: int, frame: Frame) -> int:
        if self._sources is not None:
            line = self._sources.resolve(pid, frame.file, frame.function, frame.line)
            if line is not None:
                return line
        if not frame.entered:  # without the source: the one first line its calls reported
            known = self._entry_lines.get((frame.file, frame.function), ())
            if len(known) == 1:
                return next(iter(known))
        return frame.line

    def frame(self, pid: int, frame: Frame) -> model.Frame:
        key = (pid, frame)
        if frame.synthetic:  # what stands for calls not kept apart: its text alone
            return model.Frame(frame.function, "", 0)
        if key not in self._frames:
            self._frames[key] = model.Frame(frame.function, frame.file, self._first_line(pid, frame))
        return self._frames[key]


View = Callable[[list[Frame]], Optional[list[Frame]]]
TREE_WEIGHTS: dict[str, tuple[Callable[[Node], int], model.Weight]] = {
    "time": (lambda node: node.self_ns, model.WALL_SELF_TIME),
    "calls": (lambda node: node.calls, model.CALL_COUNT),
    "samples": (lambda node: node.samples, model.SAMPLE_COUNT),  # sampled stacks (profile)
    "off-cpu": (lambda node: node.self_ns, model.OFF_CPU_TIME),  # profile --off-cpu
    "wall": (lambda node: node.self_ns, model.WALL_TIME),  # profile --wall
}
WEIGHTS = ("time", "calls")  # stack's


def weighted_stacks(
    trees: Iterable[CallTree],
    weight: str = "time",
    per_thread: bool = False,
    sources: Optional[FirstLines] = None,
    view: View = lambda path: path,
    meta: Optional[model.Meta] = None,
    thread_names: Callable[[int, int], str] = lambda pid, tid: "",
    into: Optional[model.Stacks] = None,
) -> model.Stacks:
    """The call trees as weighted stacks, per thread: weight is self time or the number of
    calls (TREE_WEIGHTS). view: the frames of a path to show (None: none); the self time of a
    frame it hides counts toward the deepest frame shown above it, its calls toward nothing.
    into: stacks to add to, so that trees read at different times (a process's, as it exits)
    merge."""
    trees = list(trees)
    labels = FrameLabels(trees, sources)
    value, unit = TREE_WEIGHTS[weight]
    stacks = into if into is not None else model.Stacks(unit, meta or model.Meta(), per_thread=per_thread)
    for tree in trees:
        tid = tree.tid or 0  # None: paths whose thread is not known
        thread = model.Thread(tree.pid, tid, thread_names(tree.pid, tid) if tid else "")
        for path, amount in weighted_paths(tree.root, value):
            shown = view(path)
            if shown and (unit.unit != model.CALLS or shown[-1] is path[-1]):  # a hidden frame's calls count toward nothing
                stacks.add(thread, tuple(labels.frame(tree.pid, frame) for frame in shown), amount)
    return stacks


def folded(
    trees: Iterable[CallTree],
    weight: str = "time",
    per_thread: bool = False,
    sources: Optional[FirstLines] = None,
    view: View = lambda path: path,
) -> list[str]:
    """Folded stacks, `frame;frame;frame WEIGHT`, sorted; weight is self time in microseconds
    or the number of calls. Threads merge unless per_thread roots each stack at its thread.
    view: as for weighted_stacks."""
    return folded_lines(weighted_stacks(trees, weight, per_thread, sources, view))


def log2_buckets(values: Iterable[float]) -> dict[int, int]:
    """Counts by power-of-two bucket: bucket b holds [2**(b-1), 2**b - 1], bucket 0 holds 0."""
    counts: dict[int, int] = defaultdict(int)
    for value in values:
        counts[max(0, int(value)).bit_length()] += 1
    return counts


def bucket_bounds(bucket: int) -> tuple[int, int]:
    return (0, 0) if bucket == 0 else (1 << (bucket - 1), (1 << bucket) - 1)


def log2_histogram(counts: dict[int, int], unit: str, width: int = 40) -> list[str]:
    """A power-of-two histogram, as bcc's tools draw them: `low -> high : count |***|`."""
    counts = {bucket: count for bucket, count in counts.items() if count}
    if not counts:
        return []
    top = max(counts.values())
    lines = [f"{unit:>22} : count    distribution"]
    for bucket in range(min(counts), max(counts) + 1):
        low, high = bucket_bounds(bucket)
        count = counts.get(bucket, 0)
        bar = "*" * round(width * count / top)
        lines.append(f"{low:>9} -> {high:<9} : {count:<8} |{bar:<{width}}|")
    return lines
