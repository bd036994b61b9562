"""Chrome's trace-event JSON, which Perfetto (ui.perfetto.dev) and chrome://tracing open: each
call a complete event ("X") on its thread's track, with exact begin and duration in
microseconds (to the nanosecond), its file and line, and the process and thread names."""

from __future__ import annotations

import json
from typing import BinaryIO, Iterator

from .. import __version__
from .model import Timeline


def _microseconds(ns: int) -> float:
    return ns / 1000  # exact to the nanosecond: at most three decimals


def events(timeline: Timeline) -> Iterator[dict]:
    """The trace's events: thread and process names, then every call."""
    found: list[dict] = []
    processes = set()
    for tid, thread in sorted(timeline.threads.items()):
        processes.add(thread.pid)
        found.append({"ph": "M", "name": "thread_name", "pid": thread.pid, "tid": tid,
                      "args": {"name": thread.label()}})
    for pid in sorted(processes):
        name = timeline.processes.get(pid) or "python"
        found.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name}})
    yield from found
    for tid in timeline.thread_ids():
        pid = timeline.threads[tid].pid
        for span in timeline.spans(tid):
            args = {"file": span.frame.file, "line": span.frame.line}
            notes = span.notes()
            if notes:
                args["inexact"] = ", ".join(notes)
            yield {
                "ph": "X", "name": span.frame.function, "cat": "python", "pid": pid, "tid": tid,
                "ts": _microseconds(span.begin), "dur": _microseconds(span.end - span.begin), "args": args,
            }


def write(timeline: Timeline, out: BinaryIO) -> None:
    """The JSON object format, an event at a time (a long trace holds millions)."""
    meta = timeline.meta
    other = {"exporter": f"pybpftrace {__version__}", "command": meta.command, "target": meta.target,
             "duration_seconds": meta.duration, "notes": meta.notes}
    out.write(b'{"traceEvents":[')
    for index, event in enumerate(events(timeline)):
        out.write((b"," if index else b"") + json.dumps(event, separators=(",", ":")).encode())
    out.write(b'],"displayTimeUnit":"ns","otherData":' + json.dumps(other, separators=(",", ":")).encode() + b"}")
