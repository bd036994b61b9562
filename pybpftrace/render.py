"""Output: the streaming call/return lines (text or JSON), and call trees as weighted stacks
(pybpftrace.formats writes those: folded stacks, flame graphs, profiles)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Callable, Iterable, Optional

from .escaping import shown
from .events import EVENT_CALL, CallEvent
from .namespaces import namespace_tid
from .formats import model
from .formats.model import format_duration
from .formats.folded import folded_lines
from .stacks import CALL_SEEDED, ENTRY_LATE, RETURN_LATE, CallTree, Frame, Node, Paired, weighted_paths

INDENT = "  "
CACHED = 65536  # labels formatted once and kept, at most (then they start afresh)


def duration_text(paired: Paired) -> str:
    """A return's duration, marked as a bound where one end was seen late: a return seen late
    makes it at most that, an entry seen late at least."""
    if paired.duration is None:
        return f"[{paired.why}]"
    bound = {RETURN_LATE: "≤", ENTRY_LATE: "≥"}.get(paired.why, "~") if paired.inexact else ""
    return f"[{bound}{format_duration(paired.duration)}]"


class TextRenderer:
    """`TIME(s) TID  => function (file:line)`, indented by the thread's depth; with pids, a PID
    column before the TID (when more than one process can be traced). A call shows its
    function's first line: a generator's or coroutine's resumption, which enters at another,
    says so; a frame running when tracing began says where it was."""

    def __init__(self, start: int, durations: bool, pids: bool = False):
        self._start = start
        self._durations = durations
        self._pids = pids
        self.header = f"{'TIME(s)':>12} {'PID':>8} {'TID':>8}  CALL\n" if pids else f"{'TIME(s)':>12} {'TID':>8}  CALL\n"
        # What repeats, formatted once: this is the streaming hot path.
        self._indents = [INDENT * depth for depth in range(64)]
        self._tids: dict[tuple[int, int], str] = {}
        self._labels: dict[tuple[str, str], str] = {}

    def gap(self, lost: int) -> str:
        """Where the kernel dropped events: the ring buffer was full when they came."""
        return f"{'':>12} [{lost} events lost about here: the events ring buffer was full]\n"

    def line(self, event: CallEvent, paired: Paired) -> str:
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
            label = self._labels[(event.function, event.file)] = (
                f"{shown(event.function)} ({shown(event.file)}:" if event.file else f"{shown(event.function)} (")
        line, note = event.line, ""
        if event.kind == EVENT_CALL:
            line = event.first_line or event.line
            if event.flags & CALL_SEEDED:
                note = f" [{paired.why}, at line {event.line}]" if event.line > 0 else f" [{paired.why}]"
            elif paired.why:
                note = f" [{paired.why}]"
            elif 0 < event.line != line:
                note = f" [resumed at line {event.line}]"
        elif self._durations:
            note = " " + duration_text(paired)
        elif RETURN_LATE in paired.why:  # said however it is asked: the time is when it was seen
            note = f" [{paired.why}]"
        where = "%d)" % line if line > 0 else ")"
        return "%12.6f %s%s%s%s%s%s\n" % (
            (event.timestamp - self._start) / 1e9,
            tid,
            self._indents[paired.indent] if paired.indent < 64 else INDENT * paired.indent,
            "=> " if event.kind == EVENT_CALL else "<= ",
            label if line > 0 or not event.file else label[:-1] + ")",
            where if line > 0 or not event.file else "",
            note,
        )


class JsonRenderer:
    """One JSON object per event, a line each; depth from the thread's root (negative for a
    call that began before tracing and whose frame could not be read then)."""

    header = ""

    def __init__(self, start: int, durations: bool):
        self._start = start
        self._ns_tids: dict[tuple[int, int], Optional[int]] = {}

    def _ns_tid(self, pid: int, tid: int) -> Optional[int]:
        """The thread's TID in its process's PID namespace, where that is not the tracer's
        (read once a thread, while it runs)."""
        key = (pid, tid)
        if key not in self._ns_tids:
            if len(self._ns_tids) >= CACHED:
                self._ns_tids.clear()
            self._ns_tids[key] = namespace_tid(pid, tid)
        return self._ns_tids[key]

    def line(self, event: CallEvent, paired: Paired) -> str:
        ns_tid = self._ns_tid(event.pid, event.tid)
        record = {
            "time": round((event.timestamp - self._start) / 1e9, 9),
            "pid": event.pid,
            "tid": event.tid,
            **({"ns_tid": ns_tid} if ns_tid is not None else {}),
            "event": "call" if event.kind == EVENT_CALL else "return",
            "depth": event.depth,
            "function": event.function,
            "file": event.file,
            "line": event.line if event.line > 0 else None,  # a return seen late: where it was, not known
            "first_line": event.first_line or None,
        }
        if paired.duration is not None:
            record["duration_ns"] = paired.duration
        if paired.why:
            record["note"] = paired.why
        return json.dumps(record) + "\n"


def model_frame(frame: Frame) -> model.Frame:
    """A frame as formats name it: its function's first line (its code object's), or, for what
    stands for calls not kept apart, its text alone."""
    if frame.synthetic:
        return model.Frame(frame.function, "", 0)
    return model.Frame(frame.function, frame.file, frame.line)


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
    value, unit = TREE_WEIGHTS[weight]
    stacks = into if into is not None else model.Stacks(unit, meta or model.Meta(), per_thread=per_thread)
    for tree in trees:
        tid = tree.tid or 0  # None: paths whose thread is not known
        thread = model.Thread(tree.pid, tid, thread_names(tree.pid, tid) if tid else "")
        for path, amount in weighted_paths(tree.root, value):
            shown = view(path)
            if shown and (unit.unit != model.CALLS or shown[-1] is path[-1]):  # a hidden frame's calls count toward nothing
                stacks.add(thread, tuple(model_frame(frame) for frame in shown), amount)
    return stacks


def folded(
    trees: Iterable[CallTree],
    weight: str = "time",
    per_thread: bool = False,
    view: View = lambda path: path,
) -> list[str]:
    """Folded stacks, `frame;frame;frame WEIGHT`, sorted; weight is self time in microseconds
    or the number of calls. Threads merge unless per_thread roots each stack at its thread.
    view: as for weighted_stacks."""
    return folded_lines(weighted_stacks(trees, weight, per_thread, view))


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
