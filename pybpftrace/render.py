"""Output: the streaming call/return lines (text or JSON) and folded stacks for flamegraph.pl."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Iterable, Optional, TextIO

from .events import EVENT_CALL, CallEvent
from .stacks import CallTree, Frame, walk

INDENT = "  "
WEIGHTS = ("time", "calls")


def format_duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1e3:.3f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3f} ms"
    return f"{ns / 1e9:.3f} s"


class TextRenderer:
    """`TIME(s) TID  => function (file:line)`, indented by the thread's depth."""

    header = f"{'TIME(s)':>12} {'TID':>8}  CALL"

    def __init__(self, stream: TextIO, start: int, durations: bool):
        self._stream = stream
        self._start = start
        self._durations = durations
        stream.write(self.header + "\n")

    def event(self, event: CallEvent, duration: Optional[int]) -> None:
        arrow = "=>" if event.kind == EVENT_CALL else "<="
        line = (
            f"{(event.timestamp - self._start) / 1e9:12.6f} {event.tid:>8}  "
            f"{INDENT * event.depth}{arrow} {event.function} ({event.file}:{event.line})"
        )
        if self._durations and duration is not None:
            line += f" [{format_duration(duration)}]"
        self._stream.write(line + "\n")


class JsonRenderer:
    """One JSON object per event, a line each."""

    def __init__(self, stream: TextIO, start: int, durations: bool):
        self._stream = stream
        self._start = start

    def event(self, event: CallEvent, duration: Optional[int]) -> None:
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
        self._stream.write(json.dumps(record) + "\n")


def _entry_lines(trees: Iterable[CallTree]) -> dict[tuple[str, str], set[int]]:
    lines: dict[tuple[str, str], set[int]] = defaultdict(set)
    for tree in trees:
        for path, _ in walk(tree.root):
            frame = path[-1]
            if frame.entered:
                lines[(frame.file, frame.function)].add(frame.line)
    return lines


def frame_label(frame: Frame, entry_lines: dict[tuple[str, str], set[int]]) -> str:
    """`function (file:first line)`. A call seen only returning knows its return line, not its
    first line: borrow the first line of that function's calls seen entering, when there is
    exactly one, so the two merge. `;` separates frames in folded stacks, so it is replaced."""
    line = frame.line
    if not frame.entered:
        known = entry_lines.get((frame.file, frame.function), ())
        if len(known) == 1:
            line = next(iter(known))
    return f"{frame.function} ({frame.file}:{line})".replace(";", ":")


def folded(trees: dict[int, CallTree], weight: str = "time", per_thread: bool = False) -> list[str]:
    """Folded stacks, `frame;frame;frame WEIGHT`, sorted; weight is self time in microseconds
    or the number of calls. Threads merge unless per_thread roots each stack at its thread."""
    entry_lines = _entry_lines(trees.values())
    totals: dict[str, int] = defaultdict(int)
    for tid, tree in trees.items():
        prefix = [f"thread {tid}"] if per_thread else []
        for path, node in walk(tree.root):
            labels = prefix + [frame_label(frame, entry_lines) for frame in path]
            totals[";".join(labels)] += node.calls if weight == "calls" else node.self_ns
    scale = 1 if weight == "calls" else 1000  # self time goes out in microseconds
    lines = []
    for stack, value in sorted(totals.items()):
        if round(value / scale):
            lines.append(f"{stack} {round(value / scale)}")
    return lines
