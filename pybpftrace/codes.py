"""Code objects as the kernel announced them: a name, a file, a first line and, when asked, a
line table, by the id frames refer to them with. The kernel reads them while the process runs,
so processes that exit before user space looks still have names.

An id mixes the process, the code object's address and what it holds (bpf/pystacks.h,
code_id): a code object freed and another made at its address get different ids, so a cached
name is never given to another function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .events import (
    LINE_UNKNOWN,
    CallEvent,
    CODE_EVENT_HEAD,
    CODE_FILE_UNREADABLE,
    CODE_LINETABLE,
    CODE_NAME_UNREADABLE,
    CODE_TEXT_MAX,
    EVENT_CALL,
    Process,
    TRUNCATION_MARK,
    UNREADABLE_NAME,
)
from .linetable import NO_LINE, LineTable

UNKNOWN_CODE = "[unreadable code object]"  # a frame whose code object could not be read
UNANNOUNCED_CODE = "[code object not announced]"  # its announcement was lost (the codes ring was full)
_ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


@dataclass
class Code:
    function: str
    file: str
    first_line: int
    lines: Optional[LineTable]  # None: not asked for
    linetable_cut: bool = False  # larger than the kernel copies: late lines are unknown

    def line(self, offset: int) -> Optional[int]:
        """The line running at this instruction offset; None where unknown."""
        if self.lines is None:
            return None
        if offset < 0:  # before its first instruction: a frame about to begin (as CPython's PyCode_Addr2Line says)
            return self.first_line
        line = self.lines.line(offset)
        return None if line in (None, NO_LINE) else line


def _text(raw: bytes, length: int, kind: int, unreadable: bool) -> str:
    """A str as CPython stores it: latin-1, UCS-2 or UCS-4, cut to what the event holds."""
    if unreadable or kind not in _ENCODINGS:
        return UNREADABLE_NAME
    size = length * kind
    text = raw[: min(size, CODE_TEXT_MAX)]
    text = text[: len(text) - len(text) % kind].decode(_ENCODINGS[kind], "replace")
    return text + TRUNCATION_MARK if size > CODE_TEXT_MAX else text


class Codes:
    """Every code object announced, by id; a process's go once it has exited (forget)."""

    def __init__(self) -> None:
        self._codes: dict[int, Code] = {}
        # (pid, incarnation) -> the ids of its code objects: a process that exited goes without
        # taking those of a later one given its PID, announced before its exit was handled
        self._of: dict[Process, set[int]] = {}

    def add(self, record: bytes, incarnation_of: Optional[Callable[[int], int]] = None) -> None:
        """A code object announced. One a sampler's walk announced carries no incarnation (0):
        it is its PID's live one (incarnation_of, 0 where none is known), or it would never go."""
        (code_id, _address, pid, first_line, name_length, file_length, linetable_size, linetable_read,
         version, name_kind, file_kind, flags, incarnation, name, file) = CODE_EVENT_HEAD.unpack_from(record)
        if not incarnation and incarnation_of is not None:
            incarnation = incarnation_of(pid)
        self._of.setdefault((pid, incarnation), set()).add(code_id)
        lines = None
        if flags & CODE_LINETABLE:
            version = (version >> 8, version & 0xFF)
            table = record[CODE_EVENT_HEAD.size : CODE_EVENT_HEAD.size + linetable_read]
            lines = LineTable(version, table, first_line)
        self._codes[code_id] = Code(
            _text(name, name_length, name_kind, bool(flags & CODE_NAME_UNREADABLE)),
            _text(file, file_length, file_kind, bool(flags & CODE_FILE_UNREADABLE)),
            first_line,
            lines,
            linetable_read < linetable_size,
        )

    def get(self, code_id: int) -> Optional[Code]:
        return self._codes.get(code_id)

    def processes(self) -> set[Process]:
        """The processes whose code objects are held."""
        return set(self._of)

    def forget(self, process: Process) -> None:
        for code_id in self._of.pop(process, ()):
            self._codes.pop(code_id, None)

    def call_event(self, record: tuple) -> CallEvent:
        """A call event (events.CALL_EVENT unpacked), its code object named: its line is the one
        the probe reported, or the one its instruction is at; a return's 0 where not known."""
        timestamp, code_id, pid, tid, line, instruction, depth, kind, flags, incarnation = record
        code = self._codes.get(code_id) if code_id else None
        if code is None:
            function = UNKNOWN_CODE if not code_id else UNANNOUNCED_CODE
            return CallEvent(timestamp, pid, tid, kind, depth, function, "", max(line, 0), 0, flags, code_id,
                             incarnation)
        if line == LINE_UNKNOWN:
            line = code.line(instruction) or 0
        if kind == EVENT_CALL and line <= 0:  # a call before its first line (3.11's <module>: 0, 3.15's closures: -1)
            line = code.first_line
        return CallEvent(timestamp, pid, tid, kind, depth, code.function, code.file, line, code.first_line, flags,
                         code_id, incarnation)

    def __len__(self) -> int:
        return len(self._codes)
