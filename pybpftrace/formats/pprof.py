"""pprof's profile.proto, gzip-compressed: what `go tool pprof`, Pyroscope and Parca read.

One sample per thread and stack, valued in each weighing given (self time in nanoseconds,
calls, samples...), labelled with its thread; one function per (name, file, first line).
The encoding is protobuf's own runtime: this module only declares the messages it writes,
with profile.proto's field numbers."""

from __future__ import annotations

import gzip
from functools import lru_cache
from typing import BinaryIO, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .model import CALLS, MICROSECONDS, NANOSECONDS, SAMPLES, Frame, Stacks

PACKAGE = "perftools.profiles"
_F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
INT64, UINT64, STRING, MESSAGE = _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_STRING, _F.TYPE_MESSAGE

# message -> (field, number, type, label, message type): the fields of profile.proto written here
MESSAGES: dict[str, list[tuple]] = {
    "Profile": [
        ("sample_type", 1, MESSAGE, REPEATED, "ValueType"),
        ("sample", 2, MESSAGE, REPEATED, "Sample"),
        ("location", 4, MESSAGE, REPEATED, "Location"),
        ("function", 5, MESSAGE, REPEATED, "Function"),
        ("string_table", 6, STRING, REPEATED, None),
        ("time_nanos", 9, INT64, OPTIONAL, None),
        ("duration_nanos", 10, INT64, OPTIONAL, None),
        ("period_type", 11, MESSAGE, OPTIONAL, "ValueType"),
        ("period", 12, INT64, OPTIONAL, None),
        ("comment", 13, INT64, REPEATED, None),
        ("default_sample_type", 14, INT64, OPTIONAL, None),
    ],
    "ValueType": [("type", 1, INT64, OPTIONAL, None), ("unit", 2, INT64, OPTIONAL, None)],
    "Sample": [
        ("location_id", 1, UINT64, REPEATED, None),
        ("value", 2, INT64, REPEATED, None),
        ("label", 3, MESSAGE, REPEATED, "Label"),
    ],
    "Label": [
        ("key", 1, INT64, OPTIONAL, None),
        ("str", 2, INT64, OPTIONAL, None),
        ("num", 3, INT64, OPTIONAL, None),
    ],
    "Location": [("id", 1, UINT64, OPTIONAL, None), ("line", 4, MESSAGE, REPEATED, "Line")],
    "Line": [("function_id", 1, UINT64, OPTIONAL, None), ("line", 2, INT64, OPTIONAL, None)],
    "Function": [
        ("id", 1, UINT64, OPTIONAL, None),
        ("name", 2, INT64, OPTIONAL, None),
        ("system_name", 3, INT64, OPTIONAL, None),
        ("filename", 4, INT64, OPTIONAL, None),
        ("start_line", 5, INT64, OPTIONAL, None),
    ],
}
UNITS = {NANOSECONDS: "nanoseconds", MICROSECONDS: "microseconds", CALLS: "count", SAMPLES: "count"}


@lru_cache(maxsize=1)
def profile_class():
    """The Profile message class, built by the protobuf runtime from MESSAGES."""
    file = descriptor_pb2.FileDescriptorProto(name="pybpftrace/profile.proto", package=PACKAGE, syntax="proto3")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                added.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Profile"))


class _Strings:
    def __init__(self) -> None:
        self.table = [""]  # index 0 is always the empty string
        self._index = {"": 0}

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.table)
            self.table.append(text)
        return index


def profile(weighings: Sequence[Stacks]) -> bytes:
    """The serialized (uncompressed) profile of the same stacks weighed one or more ways; the
    first weighing is the default sample type."""
    first = weighings[0]
    message = profile_class()()
    strings = _Strings()
    for stacks in weighings:
        message.sample_type.add(type=strings(stacks.weight.kind), unit=strings(UNITS[stacks.weight.unit]))
    message.default_sample_type = strings(first.weight.kind)
    locations: dict[Frame, int] = {}

    def location(frame: Frame) -> int:
        if frame not in locations:
            function_id = locations[frame] = len(locations) + 1  # one location per function
            message.function.add(id=function_id, name=strings(frame.function), system_name=strings(frame.function),
                                 filename=strings(frame.file), start_line=frame.line)
            message.location.add(id=function_id).line.add(function_id=function_id, line=frame.line)
        return locations[frame]

    values: dict[tuple[int, tuple[Frame, ...]], list[int]] = {}
    for index, stacks in enumerate(weighings):
        for tid, per_stack in stacks.stacks.items():
            for stack, value in per_stack.items():
                values.setdefault((tid, stack), [0] * len(weighings))[index] += value
    threads = {tid: thread for stacks in weighings for tid, thread in stacks.threads.items()}
    for (tid, stack), sample_values in values.items():
        sample = message.sample.add(location_id=[location(frame) for frame in reversed(stack)], value=sample_values)
        thread = threads[tid]
        sample.label.add(key=strings("thread"), str=strings(thread.label()))
        sample.label.add(key=strings("pid"), num=thread.pid)
        if tid:
            sample.label.add(key=strings("tid"), num=tid)
    meta = first.meta
    message.time_nanos = meta.started
    message.duration_nanos = round(meta.duration * 1e9)
    message.period_type.type = strings(first.weight.kind)
    message.period_type.unit = strings(UNITS[first.weight.unit])
    message.period = 1
    for comment in [meta.title(f"pybpftrace: {first.weight.described}"), *meta.notes]:
        message.comment.append(strings(comment))
    message.string_table.extend(strings.table)
    return message.SerializeToString()


def write(stacks: Stacks, out: BinaryIO, also: Sequence[Stacks] = ()) -> None:
    out.write(gzip.compress(profile([stacks, *also]), mtime=0))
