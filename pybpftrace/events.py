"""Events as they come off the ring buffers: layouts mirroring bpf/events.h, and the
strings they refer to by id."""

from __future__ import annotations

import struct
from typing import NamedTuple

STRING_MAX = 256

EVENT_CALL = 1
EVENT_RETURN = 2

STRING_TRUNCATED = 1
STRING_UNREADABLE = 2

COUNTER_EVENTS_LOST = 0
COUNTER_STRINGS_LOST = 1

# struct call_event: timestamp, file, function, pid, tid, line, depth, kind
CALL_EVENT = struct.Struct("<QQQIIiiB7x")
# struct string_event: address, pid, flags, text
STRING_EVENT = struct.Struct(f"<QIB3x{STRING_MAX}s")

NULL_NAME = "<null>"  # CPython passes NULL for a name it cannot encode as UTF-8
UNKNOWN_NAME = "<unknown>"  # a string whose announcement was lost
UNREADABLE_NAME = "<unreadable>"
TRUNCATION_MARK = "…"


class CallEvent(NamedTuple):
    timestamp: int
    pid: int
    tid: int
    kind: int
    depth: int
    function: str
    file: str
    line: int


class Strings:
    """The text behind each string id, per process."""

    def __init__(self) -> None:
        self._texts: dict[tuple[int, int], str] = {}

    def add(self, record: tuple) -> None:
        address, pid, flags, raw = record
        if flags & STRING_UNREADABLE:
            text = UNREADABLE_NAME
        else:
            text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            if flags & STRING_TRUNCATED:
                text += TRUNCATION_MARK
        self._texts[(pid, address)] = text

    def get(self, pid: int, address: int) -> str:
        if not address:
            return NULL_NAME
        return self._texts.get((pid, address), UNKNOWN_NAME)

    def call_event(self, record: tuple) -> CallEvent:
        timestamp, file, function, pid, tid, line, depth, kind = record
        return CallEvent(
            timestamp, pid, tid, kind, depth, self.get(pid, function), self.get(pid, file), line
        )
