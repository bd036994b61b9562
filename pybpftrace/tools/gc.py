"""`pybpftrace gc`: every garbage collection (generation, pause, collected), then a summary
per generation and a histogram of pauses; with --stacks, the Python stack that triggered each
collection under it, and with --folded, pause time aggregated by that stack."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, TextIO

from ..event_stacks import SAMPLING, StackedEvents, with_stacks
from ..events import GC_EVENT
from ..program import Handler, ProgramSpec
from ..render import format_duration, log2_buckets, log2_histogram
from ..consumer import Summary
from ..session import Session, TraceOptions, run_tool

SPEC = ProgramSpec(
    "gc.bpf.c",
    (("gc__start", Handler("on_gc_start", 1)), ("gc__done", Handler("on_gc_done", 1))),
)


@dataclass(frozen=True)
class Collection:
    timestamp: int
    pid: int
    tid: int
    generation: Optional[int]  # None: its start was not seen
    pause: Optional[int]  # ns
    collected: int

    @classmethod
    def from_record(cls, record: tuple) -> "Collection":
        timestamp, duration, collected, pid, tid, generation = record
        seen = generation >= 0
        return cls(timestamp, pid, tid, generation if seen else None, duration if seen else None, collected)


class Collections(StackedEvents):
    header = f"{'TIME(s)':>12} {'PID':>8} {'TID':>8} {'GEN':>3} {'PAUSE':>12} {'COLLECTED':>9}"

    def __init__(self, session: Session, out: TextIO, json_output: bool, stacks: bool = False, folded: bool = False):
        super().__init__(session, out, json_output, stacks, folded, timed=True)
        self.collections: list[Collection] = []

    def feed(self, records: list[tuple]) -> None:
        for record in records:
            collection = Collection.from_record(record)
            self.collections.append(collection)
            self.threads.add(collection.tid)
            stack = self._stacks.take(collection.pid, collection.tid, collection.timestamp) if self._stacks else None
            if self._folded:
                self._folded.add(collection.pid, collection.tid, stack, collection.pause or 0)
            else:
                self._out.write(self._line(collection, stack) + "\n")
        self._out.flush()

    def _line(self, c: Collection, stack) -> str:
        time = (c.timestamp - self.session.start) / 1e9
        if self._json:
            record = {"time": round(time, 9), "pid": c.pid, "tid": c.tid, "generation": c.generation,
                      "pause_ns": c.pause, "collected": c.collected}
            if self._stacks:
                record["stack"] = self._stacks.json(c.pid, stack)
            return json.dumps(record)
        generation = "?" if c.generation is None else str(c.generation)
        pause = "?" if c.pause is None else format_duration(c.pause)
        lines = [f"{time:12.6f} {c.pid:>8} {c.tid:>8} {generation:>3} {pause:>12} {c.collected:>9}"]
        if self._stacks:
            lines += self._stacks.lines(c.pid, stack)
        return "\n".join(lines)

    def finish(self, summary: Summary) -> None:
        if self.wrote_folded():
            return
        per_generation: dict[Optional[int], list[Collection]] = defaultdict(list)
        for collection in self.collections:
            per_generation[collection.generation].append(collection)
        if self._json:
            self._out.write(json.dumps({"summary": [
                {"generation": generation, "collections": len(group),
                 "pause_ns": {"total": total_pause(group), "max": max_pause(group)},
                 "collected": sum(c.collected for c in group)}
                for generation, group in sorted(per_generation.items(), key=generation_order)
            ]}) + "\n")
        else:
            self._out.write("\n" + "\n".join(summary_table(per_generation)) + "\n")
            pauses = [c.pause / 1000 for c in self.collections if c.pause is not None]
            if pauses:
                self._out.write("\nGC pauses\n" + "\n".join(log2_histogram(log2_buckets(pauses), "usecs")) + "\n")
        self._out.flush()


def generation_order(item) -> tuple:
    generation = item[0]
    return (generation is None, generation or 0)


def total_pause(group: list[Collection]) -> int:
    return sum(c.pause for c in group if c.pause is not None)


def max_pause(group: list[Collection]) -> int:
    return max((c.pause for c in group if c.pause is not None), default=0)


def summary_table(per_generation: dict[Optional[int], list[Collection]]) -> list[str]:
    lines = [f"{'GEN':>3} {'COLLECTIONS':>11} {'TOTAL PAUSE':>12} {'MEAN':>12} {'MAX':>12} {'COLLECTED':>9}"]
    for generation, group in sorted(per_generation.items(), key=generation_order):
        timed = [c for c in group if c.pause is not None]
        mean = format_duration(total_pause(timed) // len(timed)) if timed else "?"
        lines.append(
            f"{'?' if generation is None else generation:>3} {len(group):>11} "
            f"{format_duration(total_pause(group)):>12} {mean:>12} {format_duration(max_pause(group)):>12} "
            f"{sum(c.collected for c in group):>9}"
        )
    return lines


def run(trace: TraceOptions, output: Optional[TextIO], json_output: bool, stacks: bool = False,
        folded: bool = False) -> int:
    out = output or sys.stdout
    walking = stacks or folded
    return run_tool("gc", with_stacks(SPEC) if walking else SPEC, GC_EVENT, trace,
                    lambda session: Collections(session, out, json_output, stacks, folded),
                    sampling=SAMPLING if walking else None)
