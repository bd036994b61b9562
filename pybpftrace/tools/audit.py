"""`pybpftrace audit`: the stream of sys.audit events, each with its arguments decoded; with
--stacks, the Python stack that raised each; with --folded, events counted by that stack."""

from __future__ import annotations

import functools
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Optional, TextIO

from ..errors import BadUsage
from ..escaping import shown
from ..event_stacks import SAMPLING, EventStacks, StackedEvents, with_stacks
from ..events import (
    FIRST_TRUNCATED,
    FIRST_UNREADABLE,
    STRING_MAX,
    TRUNCATION_MARK,
    UNKNOWN_NAME,
    UNREADABLE_NAME,
    Names,
    Process,
)
from ..globs import CompiledGlob, GlobError, compile_glob
from ..program import Handler, ProgramSpec
from ..pyobjects import Decoder, ObjectModel, Snapshot, Value, object_model, to_json, to_text
from ..consumer import Summary
from ..session import Session, TraceOptions, run_tool
from ..target import PythonBinary

GLOBS_MAX = 8  # as in bpf/audit.bpf.c
# Mirrors bpf/events.h.
AUDIT_ITEMS = 8
AUDIT_NESTED = 4
AUDIT_TUPLE_BYTES = 96
AUDIT_ITEM_BYTES = 256
AUDIT_NESTED_BYTES = 128
_OBJECT_COUNT = 1 + AUDIT_ITEMS + AUDIT_ITEMS * AUDIT_NESTED  # the tuple, its items, theirs
# struct audit_objects: tuple, items, nested, then the same objects' type names
_OBJECTS = f"Q{AUDIT_ITEMS}Q{AUDIT_ITEMS * AUDIT_NESTED}Q" * 2
# struct audit_event: timestamp, objects, pid, tid, incarnation, binary, tuple_read, items_read,
# nested_read, flags, name, tuple_bytes, item_bytes, nested_bytes
AUDIT_EVENT = struct.Struct(
    f"<Q{_OBJECTS}IIIIH{AUDIT_ITEMS}H{AUDIT_ITEMS * AUDIT_NESTED}HB5x"
    f"{STRING_MAX}s{AUDIT_TUPLE_BYTES}s{AUDIT_ITEMS * AUDIT_ITEM_BYTES}s"
    f"{AUDIT_ITEMS * AUDIT_NESTED * AUDIT_NESTED_BYTES}s"
)


@dataclass
class AuditOptions:
    trace: TraceOptions = field(default_factory=TraceOptions)
    events: list[str] = field(default_factory=list)  # globs; none: every event
    output: Optional[TextIO] = None
    json: bool = False
    stacks: bool = False
    folded: bool = False


@dataclass(frozen=True)
class AuditEvent:
    timestamp: int
    pid: int
    tid: int
    incarnation: int
    binary: int
    name: str
    args: Snapshot


def _piece(data: bytes, size: int, index: int, length: int) -> bytes:
    """The index-th snapshot packed in data, `size` bytes apart, cut to the bytes read."""
    return data[index * size : index * size + length]


# Where struct audit_event's fields start in the unpacked record (arrays are flattened):
# objects in the order the tuple, its items, each item's items; then their type names.
_ITEMS = 2
_NESTED = _ITEMS + AUDIT_ITEMS
_TYPE_NAMES = 1 + _OBJECT_COUNT
_IDS = _TYPE_NAMES + _OBJECT_COUNT
_ITEMS_READ = _IDS + 5
_NESTED_READ = _ITEMS_READ + AUDIT_ITEMS


def parse_record(record: tuple) -> AuditEvent:
    """A struct audit_event, unpacked, as the args tuple's snapshot tree."""
    pid, tid, incarnation, binary, tuple_read = record[_IDS:_ITEMS_READ]
    flags, name, tuple_bytes, item_bytes, nested_bytes = record[-5:]
    names = record[_TYPE_NAMES:_IDS]
    children = []
    for index in range(AUDIT_ITEMS):
        address = record[_ITEMS + index]
        if not address:
            break
        inner = []
        for slot in range(index * AUDIT_NESTED, (index + 1) * AUDIT_NESTED):
            if not record[_NESTED + slot]:
                break
            data = _piece(nested_bytes, AUDIT_NESTED_BYTES, slot, record[_NESTED_READ + slot])
            inner.append(Snapshot(record[_NESTED + slot], data, (), names[_NESTED - 1 + slot]))
        data = _piece(item_bytes, AUDIT_ITEM_BYTES, index, record[_ITEMS_READ + index])
        children.append(Snapshot(address, data, tuple(inner), names[_ITEMS - 1 + index]))
    args = Snapshot(record[1], tuple_bytes[:tuple_read], tuple(children), names[0])
    return AuditEvent(record[0], pid, tid, incarnation, binary, _event_name(name, flags), args)


def _event_name(raw: bytes, flags: int) -> str:
    if flags & FIRST_UNREADABLE:
        return UNREADABLE_NAME
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return text + TRUNCATION_MARK if flags & FIRST_TRUNCATED else text


class Binaries:
    """The traced binaries, numbered for the kernel (each event says which one fired), with
    the model of their objects. A file is numbered once, however many processes map it, so
    that they share entry points."""

    def __init__(self) -> None:
        self.models: list[ObjectModel] = []
        self._numbers: dict[tuple[int, int], int] = {}

    def constants(self, binary: PythonBinary) -> tuple[int, ...]:
        """What its entry points pass after the probe's arguments (enum constant in
        bpf/audit.bpf.c): its number and its layout's offsets, zeros when unknown."""
        stat = os.stat(binary.path)
        identity = (stat.st_dev, stat.st_ino)
        if identity not in self._numbers:
            self._numbers[identity] = len(self.models)
            self.models.append(object_model(binary))
        number = self._numbers[identity]
        layout = self.models[number].layout
        offsets = (layout.ob_type, layout.ob_size, layout.tuple_items, layout.tp_name) if layout else (0,) * 4
        assert all(0 <= offset < AUDIT_TUPLE_BYTES and offset % 8 == 0 for offset in offsets), offsets
        return (number, *offsets)


def spec(binaries: Binaries, stacks: bool) -> ProgramSpec:
    plain = ProgramSpec("audit.bpf.c", (("audit", Handler("on_audit", 2)),), binary_constants=binaries.constants,
                        names_layout=True)
    return with_stacks(plain) if stacks else plain


class Decoders:
    """A decoder per (process, binary, load bias); type names come from the names ring."""

    def __init__(self, binaries: Binaries, names: Names):
        self._binaries = binaries
        self._names = names
        self._decoders: dict[tuple[int, int, Optional[int]], Decoder] = {}

    def decode(self, event: AuditEvent) -> Value:
        model = self._binaries.models[event.binary]
        bias = None
        if model.layout is not None and len(event.args.data) >= model.layout.ob_type + 8:
            offset = model.layout.ob_type
            bias = model.bias(int.from_bytes(event.args.data[offset : offset + 8], "little"))
        key = (event.pid, event.incarnation, event.binary, bias)
        if key not in self._decoders:
            self._decoders[key] = Decoder(model, bias, functools.partial(self._type_name, event.pid, event.incarnation))
        return self._decoders[key].decode_args(event.args)

    def forget(self, processes: set[Process]) -> None:
        """The decoders of processes that exited."""
        for key in [key for key in self._decoders if key[:2] in processes]:
            del self._decoders[key]

    def _type_name(self, pid: int, incarnation: int, name: int, type_address: int) -> Optional[str]:
        text = self._names.get(pid, incarnation, name, type_address)[0]
        return None if text in (UNKNOWN_NAME, UNREADABLE_NAME) else text


class TextRenderer:
    header = f"{'TIME(s)':>12} {'PID':>8} {'TID':>8}  EVENT ARGS"

    def __init__(self, stream: TextIO, start: int, stacks: Optional[EventStacks]):
        self._stream = stream
        self._start = start
        self._stacks = stacks
        stream.write(self.header + "\n")

    def event(self, event: AuditEvent, args: Value, stack) -> None:
        self._stream.write(
            f"{(event.timestamp - self._start) / 1e9:12.6f} {event.pid:>8} {event.tid:>8}  "
            f"{shown(event.name)} {to_text(args)}\n"
        )
        if self._stacks:
            self._stream.write("".join(line + "\n" for line in self._stacks.lines(event.pid, stack)))


class JsonRenderer:
    def __init__(self, stream: TextIO, start: int, stacks: Optional[EventStacks]):
        self._stream = stream
        self._start = start
        self._stacks = stacks

    def event(self, event: AuditEvent, args: Value, stack) -> None:
        record = {
            "time": round((event.timestamp - self._start) / 1e9, 9),
            "pid": event.pid,
            "tid": event.tid,
            "event": event.name,
            "args": to_json(args),
        }
        if self._stacks:
            record["stack"] = self._stacks.json(event.pid, stack)
        self._stream.write(json.dumps(record) + "\n")


class AuditConsumer(StackedEvents):
    def __init__(self, session: Session, binaries: Binaries, options: AuditOptions, out: TextIO):
        super().__init__(session, out, options.json, options.stacks, options.folded, timed=False)
        self._decoders = Decoders(binaries, session.names)
        renderer = JsonRenderer if options.json else TextRenderer
        self._renderer = None if options.folded else renderer(out, session.start, self._stacks)

    def on_exits(self, processes: set[Process]) -> None:
        self._decoders.forget(processes)

    def feed(self, records: list[tuple]) -> None:
        for record in records:
            event = parse_record(record)
            self.threads.add(event.tid)
            stack = self._stacks.take(event.pid, event.tid, event.timestamp) if self._stacks else None
            if self._folded:
                self._folded.add(event.pid, event.tid, stack, 1)
            else:
                self._renderer.event(event, self._decoders.decode(event), stack)
        self._out.flush()

    def finish(self, summary: Summary) -> None:
        self.wrote_folded()


def compile_globs(patterns: list[str]) -> list[CompiledGlob]:
    if len(patterns) > GLOBS_MAX:
        raise BadUsage(f"at most {GLOBS_MAX} --event patterns")
    try:
        return [compile_glob(pattern) for pattern in patterns]
    except GlobError as error:
        raise BadUsage(f"--event {error}") from None


def configure(session: Session, globs: list[CompiledGlob]) -> None:
    """The patterns go to the kernel through maps, never into the program's source."""
    table = session.program.table("globs")
    for index, glob in enumerate(globs):
        value = table.Leaf()
        value.start, value.stars, value.accept = glob.start, glob.stars, glob.accept
        for character, step in enumerate(glob.steps):
            value.steps[character] = step
        table[table.Key(index)] = value
    settings = session.program.table("settings")
    config = settings.Leaf()
    config.globs = len(globs)
    settings[settings.Key(0)] = config


def run(options: AuditOptions) -> int:
    globs = compile_globs(options.events)
    out = options.output or sys.stdout
    binaries = Binaries()
    walking = options.stacks or options.folded
    return run_tool(
        "audit",
        spec(binaries, walking),
        AUDIT_EVENT,
        options.trace,
        lambda session: AuditConsumer(session, binaries, options, out),
        lambda session: configure(session, globs),
        sampling=SAMPLING if walking else None,
    )
