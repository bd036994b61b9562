"""`pybpftrace calls`: per function, calls and latency (total, mean, p50/p99, max; inclusive and
self time), kept in the kernel and read at the end; --histogram draws one function's."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Optional

from ..consumer import Consumer, Summary
from ..escaping import shown
from ..events import COUNTER_DEEP_CALLS, COUNTER_FUNCTIONS_FULL, COUNTER_THREADS_FULL, Process
from ..formats import STACKS, model
from ..formats.options import Outputs
from ..program import Loss, ProgramSpec
from ..render import bucket_bounds, format_duration, log2_histogram
from ..session import Session, TraceOptions, run_tool, signed_total
from ..stacks import MAX_FRAMES
from .follow import CALL_LOSSES, code_frame, follows_calls, forget_codes
from .stack import FOLLOWING

SPEC = follows_calls(ProgramSpec(
    "calls.bpf.c", (),
    losses=(
        Loss(COUNTER_THREADS_FULL, "{n} events of threads beyond {thread_frames} live ones dropped: the "
             "thread_frames map was full", dropped=True),
        Loss(COUNTER_DEEP_CALLS, f"{{n}} calls deeper than {MAX_FRAMES} frames counted but not timed (their time "
             f"is in their callers' TOTAL, in no SELF)"),
        Loss(COUNTER_FUNCTIONS_FULL, "{n} calls not counted: the functions ({functions}) and spilled_functions "
             "({spilled_functions}) maps were full", dropped=True),
        *CALL_LOSSES,
    ),
))
SORTS = ("total", "self", "calls", "mean", "max")
KEY_PROCESS = struct.Struct("<8xII")  # struct function_key's pid and incarnation


@dataclass
class CallsOptions:
    trace: TraceOptions
    outputs: Outputs = field(default_factory=Outputs)
    sort: str = "total"
    top: int = 20
    histogram: Optional[str] = None


@dataclass
class FunctionStats:
    pid: Optional[int]  # None: the merged rows of processes that exited
    function: str
    file: str
    line: int  # its first line
    calls: int  # calls that began while traced
    timed: int  # of those, calls that ended while traced: the ones with a duration
    total: int  # ns, inclusive, of the timed calls
    self: int  # ns
    max: int
    histogram: dict[int, int]  # log2 buckets of ns
    processes: int = 1
    partial: int = 0  # calls that began before tracing (read from memory when their thread was first seen)
    running: int = 0  # calls still running when tracing ended or their thread exited
    partial_total: int = 0  # ns of those while traced, inclusive
    partial_self: int = 0

    def merge(self, other: "FunctionStats") -> None:
        self.calls += other.calls
        self.timed += other.timed
        self.total += other.total
        self.self += other.self
        self.max = max(self.max, other.max)
        self.partial += other.partial
        self.running += other.running
        self.partial_total += other.partial_total
        self.partial_self += other.partial_self
        for bucket, count in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + count

    @property
    def time(self) -> int:
        """ns spent in it while traced, inclusive: its timed calls' and those in flight."""
        return self.total + self.partial_total

    @property
    def own_time(self) -> int:
        return self.self + self.partial_self

    @property
    def mean(self) -> int:
        return self.total // self.timed if self.timed else 0

    def percentile(self, fraction: float) -> Optional[int]:
        """The nearest-rank percentile, placed inside its power-of-two bucket by its rank
        there: approximate, but exact for the largest value (the maximum is known)."""
        if not self.timed:
            return None
        rank = max(1, math.ceil(fraction * self.timed))
        seen = 0
        buckets = sorted(self.histogram)
        for bucket in buckets:
            count = self.histogram[bucket]
            if seen + count >= rank:
                low, high = bucket_bounds(bucket)
                high = min(high, self.max)
                if bucket == buckets[-1] and rank == seen + count:
                    return self.max
                return round(low + (high - low) * (rank - seen - 0.5) / count)
            seen += count
        return self.max

    def label(self) -> str:
        return f"{shown(self.function)} ({shown(self.file)}:{self.line})"


def sort_key(sort: str):
    return {
        "total": lambda s: s.time, "self": lambda s: s.own_time, "calls": lambda s: s.calls,
        "mean": lambda s: s.mean, "max": lambda s: s.max,
    }[sort]


class Calls(Consumer):
    """Reads the kernel's statistics: an exited process's as soon as it has exited (they then
    leave the kernel's map, and its code objects the tracer's memory), the rest at the end,
    with the calls still running charged up to it. The rows of processes pybpftrace found
    itself (--binary, --all, --follow-forks) merge by function once they have exited (PID
    `-`), so that process churn does not grow them without end."""

    writes_stdout = False

    def __init__(self, session: Session, options: CallsOptions):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._rows: dict[tuple, FunctionStats] = {}
        self._processes_of: dict[tuple, set[Process]] = {}  # the processes of each row
        self._named = set(session.targets.pids)  # kept apart: the processes the user named
        self._merged: set[Process] = set()

    def on_exits(self, processes: set[Process]) -> None:
        for process, stats in self.take(processes):
            merge = process[0] not in self._named
            if merge:
                self._merged.add(process)
            self._keep(process, stats, merge)
        forget_codes(self.session, processes)

    def _keep(self, process: Process, stats: FunctionStats, merge: bool) -> None:
        """A function's statistics, merged with those of the same function (name, file, first
        line: two code objects, say a module reloaded) of the same process, or of any exited
        process (merge)."""
        if merge:
            stats.pid = None
        key = (None if merge else process, stats.function, stats.file, stats.line)
        kept = self._rows.get(key)
        if kept is None:
            self._rows[key] = stats
            self._processes_of[key] = {process}
            return
        kept.merge(stats)
        if process not in self._processes_of[key]:
            self._processes_of[key].add(process)
            kept.processes += 1

    def take(self, processes: Optional[set[Process]]) -> list[tuple[Process, FunctionStats]]:
        """The statistics of these processes, which have exited, taken out of the kernel's map;
        None: of every process, at the end."""
        found = []
        for name in ("functions", "spilled_functions"):
            found += self._take_from(name, processes)
        return found

    def _take_from(self, name: str, processes: Optional[set[Process]]) -> list[tuple[Process, FunctionStats]]:
        program = self.session.program
        table = program.table(name)
        found, taken = [], []
        for raw_key, raw in program.entries(name):
            if processes is not None and KEY_PROCESS.unpack_from(raw_key) not in processes:
                continue  # (a look at two fields: the functions of every Python there is, with --all)
            key = table.Key.from_buffer_copy(raw_key)
            taken.append(raw_key)
            per_cpu = table.Leaf.from_buffer_copy(raw)
            frame = code_frame(self.session.codes, key.code)
            histogram = {
                bucket: total
                for bucket, total in enumerate(map(sum, zip(*(value.histogram for value in per_cpu))))
                if total
            }
            total = lambda field: signed_total(getattr(value, field) for value in per_cpu)  # noqa: E731
            found.append(((key.pid, key.incarnation), FunctionStats(
                key.pid, frame.function, frame.file, frame.line,
                calls=total("calls"), timed=total("timed"), total=total("total"), self=total("self"),
                max=max(value.max for value in per_cpu), histogram=histogram,
                partial=total("partial"), running=total("cut"),
                partial_total=total("partial_total") + total("cut_total"),
                partial_self=total("partial_self") + total("cut_self"),
            )))
        if processes is not None:
            program.delete(name, taken)
        return found

    def _running(self, end: int) -> list[tuple[Process, FunctionStats]]:
        """The calls still running at the end (ns), each a row of its own, with its time so far."""
        leaf = self.session.program.table("thread_frames").Leaf
        found = []
        for _, raw in self.session.program.entries("thread_frames"):
            frames = leaf.from_buffer_copy(raw)
            kept = max(0, min(frames.depth, MAX_FRAMES))
            until = frames.deep_since if frames.depth > MAX_FRAMES else end
            for frame in reversed(frames.stack[:kept]):
                code = code_frame(self.session.codes, frame.code)
                found.append(((frames.pid, frames.incarnation), FunctionStats(
                    frames.pid, code.function, code.file, code.line, calls=0, timed=0, total=0, self=0, max=0,
                    histogram={}, partial=int(bool(frame.flags & FRAME_SEEDED)), running=1,
                    partial_total=end - frame.start, partial_self=until - frame.start - frame.callees)))
                until = frame.start
        return found

    def finish(self, summary: Summary) -> None:
        for process, stats in self.take(None) + self._running(self.session.start + int(summary.seconds * 1e9)):
            self._keep(process, stats, merge=False)
        if self._merged:
            summary.notes.append(f"the rows of {len(self._merged)} processes that exited are merged by function "
                                 "(PID -)")
        stats = sorted(self._rows.values(), key=sort_key(self._options.sort), reverse=True)
        for output in self._options.outputs.own():
            output.text().write(self.text(stats, output.format == "json"))
            output.text().flush()
        if self._options.outputs.taking(STACKS):
            meta = self.session.meta(summary)
            self._options.outputs.write_stacks(flat_stacks(stats, model.WALL_SELF_TIME, meta),
                                               also=[flat_stacks(stats, model.CALL_COUNT, meta)])

    def text(self, stats: list[FunctionStats], as_json: bool) -> str:
        options = self._options
        if options.histogram is not None:
            chosen = [s for s in stats if s.function == options.histogram]
            if as_json:
                return json.dumps({"histograms": [as_json_object(s) for s in chosen]}) + "\n"
            return "".join(histogram_text(s) for s in chosen)
        if as_json:
            return json.dumps({"functions": [as_json_object(s) for s in stats[: options.top]]}) + "\n"
        return "\n".join(table(stats[: options.top])) + "\n"

    def writing(self) -> str:
        return ", ".join(f"{output.describe()} at the end" for output in self._options.outputs.items)


FRAME_SEEDED = 1  # bpf/frames.h


def flat_stacks(stats: list[FunctionStats], weight: model.Weight, meta: model.Meta) -> model.Stacks:
    """Each function as a stack of its own (a flat profile), per process (exited processes'
    merged rows as one): its self time or its calls."""
    stacks = model.Stacks(weight, meta)
    for s in stats:
        value = s.own_time if weight.is_time else s.calls
        stacks.add(model.Thread(s.pid or 0, 0, "all threads"), (model.Frame(s.function, s.file, s.line),), value)
    return stacks


def _time(ns: Optional[int]) -> str:
    return "-" if ns is None else format_duration(ns)


def table(stats: list[FunctionStats]) -> list[str]:
    """CALLS: calls that began while traced, `+N` those that began before (in flight when
    tracing began); TOTAL and SELF: time while traced, in flight included; MEAN to MAX: the
    calls that began and ended while traced."""
    header = (f"{'CALLS':>9} {'TOTAL':>12} {'SELF':>12} {'MEAN':>12} {'P50~':>12} {'P99~':>12} "
              f"{'MAX':>12} {'PID':>8}  FUNCTION")
    lines = [header]
    in_flight = running = 0
    for s in stats:
        timed = s.timed > 0
        spent = timed or s.partial or s.running
        calls = f"{s.calls}+{s.partial}" if s.partial else str(s.calls)
        in_flight += s.partial
        running += s.running
        lines.append(
            f"{calls:>9} {_time(s.time if spent else None):>12} {_time(s.own_time if spent else None):>12} "
            f"{_time(s.mean if timed else None):>12} {_time(s.percentile(0.5)):>12} "
            f"{_time(s.percentile(0.99)):>12} {_time(s.max if timed else None):>12} {_pid(s):>8}  {s.label()}"
        )
    if in_flight or running:
        lines.append(f"(+N: calls that began before tracing, {in_flight} in all; TOTAL and SELF include the time "
                     f"while traced of those and of the {running} calls still running when tracing stopped or their "
                     "thread exited)")
    return lines


def _pid(s: FunctionStats) -> str:
    return "-" if s.pid is None else str(s.pid)


def histogram_text(s: FunctionStats) -> str:
    where = f"PID {s.pid}" if s.pid is not None else f"{s.processes} processes that exited"
    lines = [f"{s.label()} in {where}: {s.timed} timed calls of {s.calls}"]
    lines += log2_histogram(s.histogram, "nsecs")
    return "\n".join(lines) + "\n\n"


def as_json_object(s: FunctionStats) -> dict:
    return {
        "pid": s.pid, "processes": s.processes, "function": s.function, "file": s.file, "line": s.line,
        "calls": s.calls, "timed_calls": s.timed, "partial_calls": s.partial, "running_calls": s.running,
        "total_ns": s.time, "self_ns": s.own_time, "timed_total_ns": s.total, "mean_ns": s.mean,
        "p50_ns": s.percentile(0.5), "p99_ns": s.percentile(0.99), "max_ns": s.max,
        "histogram_log2_ns": {str(bucket): count for bucket, count in sorted(s.histogram.items())},
    }


def run(options: CallsOptions) -> int:
    return run_tool("calls", SPEC, None, options.trace, lambda session: Calls(session, options), sampling=FOLLOWING)
