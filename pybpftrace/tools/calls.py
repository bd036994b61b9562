"""`pybpftrace calls`: per function, calls and latency (total, mean, p50/p99, max; inclusive and
self time), kept in the kernel and read at the end; --histogram draws one function's."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional

from ..formats import STACKS, model
from ..formats.options import Outputs
from ..program import Handler, ProgramSpec
from ..render import bucket_bounds, format_duration, log2_histogram
from ..session import Consumer, Session, Summary, TraceOptions, run_tool

SPEC = ProgramSpec(
    "calls.bpf.c",
    (
        ("function__return", Handler("on_function_return", 3)),
        ("function__entry", Handler("on_function_entry", 3)),
    ),
    markers=(("_Py_MakeCoro", Handler("on_generator_created", 3)),),
)
SORTS = ("total", "self", "calls", "mean", "max")


@dataclass
class CallsOptions:
    trace: TraceOptions
    outputs: Outputs = field(default_factory=Outputs)
    sort: str = "total"
    top: int = 20
    histogram: Optional[str] = None


@dataclass
class FunctionStats:
    pid: int
    function: str
    file: str
    line: int
    calls: int
    timed: int  # calls whose entry was seen: the ones with a duration
    total: int  # ns, inclusive
    self: int  # ns
    max: int
    histogram: dict[int, int]  # log2 buckets of ns

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
        return f"{self.function} ({self.file}:{self.line})"


def sort_key(sort: str):
    return {
        "total": lambda s: s.total, "self": lambda s: s.self, "calls": lambda s: s.calls,
        "mean": lambda s: s.mean, "max": lambda s: s.max,
    }[sort]


class Calls(Consumer):
    """Reads the kernel's statistics at the end."""

    writes_stdout = False

    def __init__(self, session: Session, options: CallsOptions):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._sources = session.sources

    def read(self) -> list[FunctionStats]:
        names = self.session.names
        found = []
        for key, per_cpu in self.session.program.table("functions").items():
            file, function = names.get(key.pid, key.file, key.function)
            if key.pid not in self._sources:
                self._sources.watch(key.pid)
            reported = next((value.line for value in per_cpu if value.line), 0)
            line = self._sources.resolve(key.pid, file, function, reported) or reported
            histogram = {
                bucket: total
                for bucket, total in enumerate(map(sum, zip(*(value.histogram for value in per_cpu))))
                if total
            }
            found.append(FunctionStats(
                key.pid, function, file, line,
                calls=sum(value.calls for value in per_cpu),
                timed=sum(value.timed for value in per_cpu),
                total=sum(value.total for value in per_cpu),
                self=sum(value.self for value in per_cpu),
                max=max(value.max for value in per_cpu),
                histogram=histogram,
            ))
        return found

    def finish(self, summary: Summary) -> None:
        stats = sorted(self.read(), key=sort_key(self._options.sort), reverse=True)
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


def flat_stacks(stats: list[FunctionStats], weight: model.Weight, meta: model.Meta) -> model.Stacks:
    """Each function as a stack of its own (a flat profile), per process: its self time or
    its calls."""
    stacks = model.Stacks(weight, meta)
    for s in stats:
        value = s.self if weight.is_time else s.calls
        stacks.add(model.Thread(s.pid, 0, "all threads"), (model.Frame(s.function, s.file, s.line),), value)
    return stacks


def _time(ns: Optional[int]) -> str:
    return "-" if ns is None else format_duration(ns)


def table(stats: list[FunctionStats]) -> list[str]:
    header = (f"{'CALLS':>9} {'TOTAL':>12} {'SELF':>12} {'MEAN':>12} {'P50~':>12} {'P99~':>12} "
              f"{'MAX':>12} {'PID':>8}  FUNCTION")
    lines = [header]
    for s in stats:
        timed = s.timed > 0
        lines.append(
            f"{s.calls:>9} {_time(s.total if timed else None):>12} {_time(s.self if timed else None):>12} "
            f"{_time(s.mean if timed else None):>12} {_time(s.percentile(0.5)):>12} "
            f"{_time(s.percentile(0.99)):>12} {_time(s.max if timed else None):>12} {s.pid:>8}  {s.label()}"
        )
    return lines


def histogram_text(s: FunctionStats) -> str:
    lines = [f"{s.label()} in PID {s.pid}: {s.timed} timed calls of {s.calls}"]
    lines += log2_histogram(s.histogram, "nsecs")
    return "\n".join(lines) + "\n\n"


def as_json_object(s: FunctionStats) -> dict:
    return {
        "pid": s.pid, "function": s.function, "file": s.file, "line": s.line, "calls": s.calls,
        "timed_calls": s.timed, "total_ns": s.total, "self_ns": s.self, "mean_ns": s.mean,
        "p50_ns": s.percentile(0.5), "p99_ns": s.percentile(0.99), "max_ns": s.max,
        "histogram_log2_ns": {str(bucket): count for bucket, count in sorted(s.histogram.items())},
    }


def run(options: CallsOptions) -> int:
    return run_tool("calls", SPEC, None, options.trace, lambda session: Calls(session, options))
