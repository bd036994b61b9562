"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one profile
per thread, sampled (weighted stacks) or evented (each call opened and closed at its exact
times, from a timeline)."""

from __future__ import annotations

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


def _file(meta: Meta, what: str, profiles: list[dict], frames: _Frames) -> dict:
    profiles.sort(key=lambda profile: profile["endValue"] - profile["startValue"], reverse=True)
    return {
        "$schema": SCHEMA,
        "name": meta.title(what) + "".join(f"; {note}" for note in meta.notes),
        "exporter": f"pybpftrace {__version__}",
        "activeProfileIndex": 0,
        "profiles": profiles,
        "shared": {"frames": frames.shared},
    }


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
    return _file(stacks.meta, stacks.weight.described, profiles, frames)


def evented(timeline: Timeline) -> dict:
    """One evented profile per thread: its calls opened and closed in time order, in
    nanoseconds since tracing began. A profile's name says which calls' bounds are not exact."""
    frames = _Frames()
    profiles = []
    for tid in timeline.thread_ids():
        events: list[dict] = []
        open_spans = []
        inexact: dict[str, int] = {}
        for span in timeline.in_call_order(tid):
            while open_spans and open_spans[-1].depth >= span.depth:
                closing = open_spans.pop()
                events.append({"type": "C", "frame": frames(closing.frame), "at": closing.end})
            events.append({"type": "O", "frame": frames(span.frame), "at": span.begin})
            open_spans.append(span)
            for note in span.notes():
                inexact[note] = inexact.get(note, 0) + 1
        while open_spans:
            closing = open_spans.pop()
            events.append({"type": "C", "frame": frames(closing.frame), "at": closing.end})
        name = timeline.threads[tid].label()
        if inexact:
            name += " (" + ", ".join(f"{count} {note}" for note, count in inexact.items()) + ")"
        profiles.append({
            "type": "evented",
            "name": name,
            "unit": "nanoseconds",
            "startValue": 0,
            "endValue": max(timeline.end(), events[-1]["at"] if events else 0),
            "events": events,
        })
    return _file(timeline.meta, "calls", profiles, frames)


def write(data: Union[Stacks, Timeline], out: BinaryIO) -> None:
    document = evented(data) if isinstance(data, Timeline) else sampled(data)
    out.write(json.dumps(document, separators=(",", ":")).encode())
