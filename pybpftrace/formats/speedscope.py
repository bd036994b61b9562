"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one profile
per thread, sampled (weighted stacks) or evented (each call opened and closed at its exact
times, from a timeline)."""

from __future__ import annotations

import io
import json
from typing import BinaryIO, Union

from .. import __version__
from .model import MICROSECONDS, NANOSECONDS, Frame, Meta, Stacks, Timeline

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
UNITS = {NANOSECONDS: "nanoseconds", MICROSECONDS: "microseconds"}  # others: "none"


class _Frames:
    def __init__(self) -> None:
        self.shared: list[dict] = []
        self._index: dict[Frame, int] = {}

    def __call__(self, frame: Frame) -> int:
        index = self._index.get(frame)
        if index is None:
            index = self._index[frame] = len(self.shared)
            self.shared.append({"name": frame.function, "file": frame.file, "line": frame.line})
        return index




def sampled(stacks: Stacks) -> dict:
    """One sampled profile per thread, heaviest first: each stack once, with its weight."""
    frames = _Frames()
    profiles = []
    for tid, per_stack in stacks.stacks.items():
        weighted = [(stack, value) for stack, value in sorted(per_stack.items(), key=lambda item: [f.label() for f in item[0]]) if value > 0]
        profiles.append({
            "type": "sampled",
            "name": f"{stacks.threads[tid].label()}: {stacks.weight.described}",
            "unit": UNITS.get(stacks.weight.unit, "none"),
            "startValue": 0,
            "endValue": sum(value for _, value in weighted),
            "samples": [[frames(frame) for frame in stack] for stack, _ in weighted],
            "weights": [value for _, value in weighted],
        })
    profiles.sort(key=lambda profile: profile["endValue"], reverse=True)  # the heaviest thread first
    return {**_file_header(stacks.meta, stacks.weight.described), "profiles": profiles,
            "shared": {"frames": frames.shared}}


def _file_header(meta: Meta, what: str) -> dict:
    return {
        "$schema": SCHEMA,
        "name": meta.title(what) + "".join(f"; {note}" for note in meta.notes),
        "exporter": f"pybpftrace {__version__}",
        "activeProfileIndex": 0,
    }


def _evented_profile(timeline: Timeline, tid: int, frames: _Frames, out: BinaryIO) -> None:
    """A thread's calls opened and closed in time order, written an event at a time."""
    inexact: dict[str, int] = {}
    for span in timeline.spans(tid):
        for note in span.notes():
            inexact[note] = inexact.get(note, 0) + 1
    name = timeline.threads[tid].label()
    if inexact:
        name += " (" + ", ".join(f"{count} {note}" for note, count in inexact.items()) + ")"
    spans = timeline.in_call_order(tid)
    end = max([timeline.end()] + [span.end for span in spans])
    header = {"type": "evented", "name": name, "unit": "nanoseconds", "startValue": 0, "endValue": end}
    out.write(json.dumps(header, separators=(",", ":"))[:-1].encode() + b',"events":[')
    separator = b""
    open_spans: list = []

    def event(kind: str, frame: Frame, at: int) -> None:
        nonlocal separator
        out.write(b'%s{"type":"%s","frame":%d,"at":%d}' % (separator, kind.encode(), frames(frame), at))
        separator = b","

    for span in spans:
        while open_spans and open_spans[-1].depth >= span.depth:
            closing = open_spans.pop()
            event("C", closing.frame, closing.end)
        event("O", span.frame, span.begin)
        open_spans.append(span)
    while open_spans:
        closing = open_spans.pop()
        event("C", closing.frame, closing.end)
    out.write(b"]}")


def write_evented(timeline: Timeline, out: BinaryIO) -> None:
    """One evented profile per thread: its calls opened and closed in time order, in
    nanoseconds since tracing began. A profile's name says which calls' bounds are not exact.
    Written as it goes: a long trace holds millions of calls."""
    frames = _Frames()
    out.write(json.dumps(_file_header(timeline.meta, "calls"), separators=(",", ":"))[:-1].encode() + b',"profiles":[')
    for index, tid in enumerate(timeline.thread_ids()):
        if index:
            out.write(b",")
        _evented_profile(timeline, tid, frames, out)
    out.write(b'],"shared":' + json.dumps({"frames": frames.shared}, separators=(",", ":")).encode() + b"}")


def evented(timeline: Timeline) -> dict:
    buffer = io.BytesIO()
    write_evented(timeline, buffer)
    return json.loads(buffer.getvalue())


def write(data: Union[Stacks, Timeline], out: BinaryIO) -> None:
    if isinstance(data, Timeline):
        write_evented(data, out)
    else:
        out.write(json.dumps(sampled(data), separators=(",", ":")).encode())
