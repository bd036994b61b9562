"""`pybpftrace imports`: each module import, nested under the import that triggered it, with
its duration and whether it was found; at the end a tree sorted by time, like
`python -X importtime` from the outside. With --stacks, the Python stack that ran each import;
with --folded, import time (each import's own) aggregated by that stack."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Iterator, Optional, TextIO

from ..escaping import shown
from ..event_stacks import SAMPLING, StackedEvents, with_stacks
from ..events import IMPORT_EVENT, IMPORT_START, TRUNCATION_MARK
from ..program import Handler, ProgramSpec
from ..render import format_duration
from ..consumer import Summary
from ..session import Session, TraceOptions, run_tool

SPEC = ProgramSpec(
    "imports.bpf.c",
    (
        ("import__find__load__done", Handler("on_import_done", 2)),
        ("import__find__load__start", Handler("on_import_start", 1)),
    ),
)
INDENT = "  "


@dataclass
class Import:
    name: str
    pid: int
    tid: int
    start: Optional[int]  # ns; None: it began before tracing
    depth: int
    end: Optional[int] = None  # None: still running when tracing ended
    found: Optional[bool] = None
    children: list["Import"] = field(default_factory=list)
    stack: object = None  # the Python stack it started in (a samples.Sample), with --stacks
    flattened: bool = False  # nested deeper than NESTING_MAX: kept at that depth, its self time unknown

    @property
    def duration(self) -> Optional[int]:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def self_time(self) -> Optional[int]:
        children = [child for child in self.children if not child.flattened]  # those nest in one
        if self.flattened or self.duration is None or any(child.duration is None for child in children):
            return None
        return self.duration - sum(child.duration for child in children)

    @property
    def status(self) -> str:
        return {True: "", False: " (not found)", None: " (unfinished)"}[self.found]


# Deeper imports are kept at this depth (json's encoder recurses, a few levels per import).
NESTING_MAX = 200


class ImportTrees:
    """Nests imports per thread: an import started while another runs on the same thread was
    triggered by it."""

    def __init__(self) -> None:
        self.roots: list[Import] = []
        self._open: dict[int, list[Import]] = {}
        self.flattened = 0  # imports nested deeper than NESTING_MAX, kept at that depth

    def start(self, name: str, pid: int, tid: int, timestamp: int) -> Import:
        stack = self._open.setdefault(tid, [])
        started = Import(name, pid, tid, timestamp, len(stack))
        parent = stack[min(len(stack), NESTING_MAX) - 1] if stack else None
        if len(stack) > NESTING_MAX:
            self.flattened += 1
            started.flattened = True
        (parent.children if parent else self.roots).append(started)
        stack.append(started)
        return started

    def done(self, name: str, pid: int, tid: int, timestamp: int, found: bool) -> Import:
        stack = self._open.setdefault(tid, [])
        for index in range(len(stack) - 1, -1, -1):
            if stack[index].name == name:
                done = stack[index]
                del stack[index:]  # anything above it lost its end
                break
        else:  # it began before tracing
            done = Import(name, pid, tid, None, 0)
            self.roots.append(done)
        done.end, done.found = timestamp, found
        return done


def by_time(imports: list[Import]) -> list[Import]:
    return sorted(imports, key=lambda i: (i.duration is None, -(i.duration or 0), i.start or 0))


def walk(imports: list[Import]) -> Iterator[tuple[int, Import]]:
    """The tree depth first, slowest first at each level (iteratively: a target decides how
    deep its imports nest)."""
    pending = [(0, imported) for imported in reversed(by_time(imports))]
    while pending:
        level, imported = pending.pop()
        yield level, imported
        pending.extend((level + 1, child) for child in reversed(by_time(imported.children)))


def _time(ns: Optional[int]) -> str:
    return "?" if ns is None else format_duration(ns)


def as_json(root: Import) -> dict:
    """An import and what it imported, nested (iteratively: NESTING_MAX bounds the depth)."""
    def node(imported: Import) -> dict:
        return {"module": imported.name, "pid": imported.pid, "tid": imported.tid, "found": imported.found,
                "duration_ns": imported.duration, "self_ns": imported.self_time, "imports": []}

    top = node(root)
    pending = [(root, top)]
    while pending:
        imported, made = pending.pop()
        for child in by_time(imported.children):
            made["imports"].append(node(child))
            pending.append((child, made["imports"][-1]))
    return top


class Imports(StackedEvents):
    header = f"{'TIME(s)':>12} {'PID':>8} {'TID':>8} {'CUMULATIVE':>12} {'SELF':>12}  MODULE"

    def __init__(self, session: Session, out: TextIO, json_output: bool, stacks: bool = False, folded: bool = False):
        super().__init__(session, out, json_output, stacks, folded, timed=True)
        self.trees = ImportTrees()

    def feed(self, records: list[tuple]) -> None:
        for timestamp, pid, tid, kind, found, truncated, raw in records:
            self.threads.add(tid)
            name = raw.split(b"\0", 1)[0].decode("utf-8", "replace") + (TRUNCATION_MARK if truncated else "")
            if kind == IMPORT_START:
                started = self.trees.start(name, pid, tid, timestamp)
                if self._stacks:
                    started.stack = self._stacks.take(pid, tid, timestamp)
            else:
                done = self.trees.done(name, pid, tid, timestamp, bool(found))
                if self._folded:
                    if done.start is not None:  # its stack is its start's
                        self._folded.add(done.pid, done.tid, done.stack, done.self_time or 0)
                else:
                    self._write(done)
        self._out.flush()

    def _write(self, done: Import) -> None:
        time = (done.end - self.session.start) / 1e9
        if self._json:
            record = {
                "time": round(time, 9), "pid": done.pid, "tid": done.tid, "module": done.name,
                "depth": done.depth, "found": done.found, "duration_ns": done.duration, "self_ns": done.self_time,
            }
            if self._stacks and done.start is not None:
                record["stack"] = self._stacks.json(done.pid, done.stack)
            self._out.write(json.dumps(record) + "\n")
            return
        self._out.write(
            f"{time:12.6f} {done.pid:>8} {done.tid:>8} {_time(done.duration):>12} {_time(done.self_time):>12}  "
            f"{INDENT * done.depth}{shown(done.name)}{done.status}\n"
        )
        if self._stacks and done.start is not None:
            indent = " " * 56 + INDENT * done.depth
            self._out.write("".join(line + "\n" for line in self._stacks.lines(done.pid, done.stack, indent)))

    def finish(self, summary: Summary) -> None:
        if self.wrote_folded():
            return
        note = (f"{self.trees.flattened} imports nested deeper than {NESTING_MAX} levels are shown at that depth, "
                "their self time unknown" if self.trees.flattened else None)
        if self._json:
            tree = {"tree": [as_json(root) for root in by_time(self.trees.roots)], **({"note": note} if note else {})}
            self._out.write(json.dumps(tree) + "\n")
        elif self.trees.roots:
            self._out.write(f"\nImports, slowest first\n{'CUMULATIVE':>12} {'SELF':>12}  MODULE\n")
            if note:
                self._out.write(f"[{note}]\n")
            for level, imported in walk(self.trees.roots):
                self._out.write(
                    f"{_time(imported.duration):>12} {_time(imported.self_time):>12}  "
                    f"{INDENT * level}{shown(imported.name)}{imported.status}\n"
                )
        self._out.flush()


def run(trace: TraceOptions, output: Optional[TextIO], json_output: bool, stacks: bool = False,
        folded: bool = False) -> int:
    out = output or sys.stdout
    walking = stacks or folded
    return run_tool("imports", with_stacks(SPEC) if walking else SPEC, IMPORT_EVENT, trace,
                    lambda session: Imports(session, out, json_output, stacks, folded),
                    sampling=SAMPLING if walking else None)
