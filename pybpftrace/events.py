"""Events as they come off the ring buffers: layouts mirroring bpf/events.h, and the
strings they refer to by id."""

from __future__ import annotations

import struct
from typing import NamedTuple

STRING_MAX = 256

EVENT_CALL = 1
EVENT_RETURN = 2
EVENT_CREATED = 3
EVENT_LINE = 4

# enum call_flags
CALL_FRESH = 1
CALL_INEXACT = 2
CALL_ENTRY_UNSEEN = 4
LINE_UNKNOWN = -(2**31)  # bpf/frames.h: a call event whose line the probe did not report

FIRST_TRUNCATED = 1
SECOND_TRUNCATED = 2
FIRST_UNREADABLE = 4
SECOND_UNREADABLE = 8

# enum counter
COUNTER_EVENTS = 0
COUNTER_EVENTS_LOST = 1
COUNTER_NAMES_LOST = 2
COUNTER_THREADS_FULL = 3
COUNTER_PROCESSES_FULL = 4
COUNTER_DEEP_CALLS = 5
COUNTER_NODES_FULL = 6
COUNTER_PATHS_LOST = 7
COUNTER_ROOTS_FULL = 8
COUNTER_FUNCTIONS_FULL = 9
COUNTER_COUNTS_FULL = 10
COUNTER_ENDED_FULL = 11
COUNTER_NO_MEMORY = 12
COUNTER_SHORT_WAITS = 13
COUNTER_SHORT_WAITS_NS = 14
COUNTER_UNTRACKED_THREADS = 15
COUNTER_SWITCHES_UNSEEN = 16
COUNTER_SWITCHES_UNSEEN_NS = 17
COUNTER_CODES_LOST = 18
COUNTER_SEEDS_PARTIAL = 19
COUNTER_NO_THREAD_STATE = 20
COUNTER_MISSED_RETURNS = 21
COUNTER_RECOVERED_CALLS = 22
COUNTER_STACK_MISMATCH = 23
COUNTER_INITS_UNTIMED = 24
COUNTER_HOOK_FORKS_LOST = 25
COUNTER_WITHOUT_GIL = 26
COUNTER_PROCESS_EVENTS_LOST = 27
COUNTER_PROCESSES_UNREAD = 28
COUNTER_UNREGISTERED_EVENTS = 29
COUNTER_CHAIN_SPENT = 30
COUNTER_MAX = 31

# struct call_event: timestamp, code, pid, tid, line, instruction, depth, kind, flags, incarnation
CALL_EVENT = struct.Struct("<QQIIiiiBB2xI4x")
# struct line_event: timestamp, file, function, pid, tid, line, incarnation
LINE_EVENT = struct.Struct("<QQQIIiI")
# struct gc_event: timestamp, duration, collected, pid, tid, generation
GC_EVENT = struct.Struct("<QQqIIi4x")

IMPORT_NAME_MAX = 128
IMPORT_START = 1
IMPORT_DONE = 2
# struct import_event: timestamp, pid, tid, kind, found, truncated, name
IMPORT_EVENT = struct.Struct(f"<QIIBBB5x{IMPORT_NAME_MAX}s")

# struct fork_event: parent, child
FORK_EVENT = struct.Struct("<II")
PROGRAM_MAX = 112
# struct process_event: pid, parent, kind, program
PROCESS_EVENT = struct.Struct(f"<III4x{PROGRAM_MAX}s")
PROCESS_EXECED = 1
PROCESS_FORKED = 2
PROCESS_BORN = 3
PROCESS_TRACED = 1  # value in the `processes` map once a process's uprobes are all attached

# struct names_event: first, second, pid, incarnation, flags, first_text, second_text
NAMES_EVENT = struct.Struct(f"<QQIIB7x{STRING_MAX}s{STRING_MAX}s")

NULL_NAME = "<null>"  # CPython passes NULL for a name it cannot encode as UTF-8
UNKNOWN_NAME = "<unknown>"  # names whose announcement was lost
UNREADABLE_NAME = "<unreadable>"
TRUNCATION_MARK = "…"


class CallEvent(NamedTuple):
    """A call or return of a code object, its names resolved (codes.Codes.call_event)."""

    timestamp: int
    pid: int
    tid: int
    kind: int
    depth: int
    function: str
    file: str
    line: int  # where it entered (a resumption's line) or returned from; 0 where not known
    first_line: int = 0  # its function's first line (co_firstlineno)
    flags: int = 0  # CALL_FRESH, CALL_INEXACT, CALL_ENTRY_UNSEEN
    code: int = 0  # the code object's id
    incarnation: int = 0  # which process with this PID (events.Process)

    @property
    def fresh(self) -> bool:
        """The first event of a thread whose id may have been another's."""
        return bool(self.flags & CALL_FRESH)


class LineEvent(NamedTuple):
    timestamp: int
    pid: int
    tid: int
    function: str
    file: str
    line: int


def _text(raw: bytes, address: int, truncated: bool, unreadable: bool) -> str:
    if not address:
        return NULL_NAME
    if unreadable:
        return UNREADABLE_NAME
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return text + TRUNCATION_MARK if truncated else text


Process = tuple[int, int]  # (pid, incarnation): a process, apart from any later one with its PID


class Names:
    """The text behind each pair of string ids, per process; a process's go once it has
    exited and what refers to them is done with (forget)."""

    def __init__(self) -> None:
        self._processes: dict[Process, dict[tuple[int, int], tuple[str, str]]] = {}

    def add(self, record: tuple) -> None:
        """Hold a names record's texts."""
        first, second, pid, incarnation, flags, first_text, second_text = record
        self._processes.setdefault((pid, incarnation), {})[(first, second)] = (
            _text(first_text, first, bool(flags & FIRST_TRUNCATED), bool(flags & FIRST_UNREADABLE)),
            _text(second_text, second, bool(flags & SECOND_TRUNCATED), bool(flags & SECOND_UNREADABLE)),
        )

    def get(self, pid: int, incarnation: int, first: int, second: int) -> tuple[str, str]:
        pairs = self._processes.get((pid, incarnation))
        return pairs.get((first, second), _UNKNOWN) if pairs else _UNKNOWN

    def processes(self) -> set[Process]:
        """The processes whose names are held."""
        return set(self._processes)

    def forget(self, process: Process) -> None:
        self._processes.pop(process, None)

    def line_event(self, record: tuple) -> LineEvent:
        timestamp, file, function, pid, tid, line, incarnation = record
        file_name, function_name = self.get(pid, incarnation, file, function)
        return LineEvent(timestamp, pid, tid, function_name, file_name, line)


_UNKNOWN = (UNKNOWN_NAME, UNKNOWN_NAME)


# Python stacks read out of the interpreter's memory (bpf/pystacks.h).
OFFSET_NONE = 0xFFFF
OWNER_NONE = 0xFF
INSTR_LASTI_BYTES = 1
INSTR_LASTI_UNITS = 2
INSTR_POINTER = 3
GENERATOR_NONE = 0
GENERATOR_POINTER = 1
GENERATOR_EMBEDDED = 2

SAMPLE_FRAMES_MAX = 1024
SAMPLE_CPU = 1
SAMPLE_DUMP = 2
SAMPLE_OFF_CPU = 3
SAMPLE_PREEMPTED = 4
SAMPLE_RESUMED = 5
SAMPLE_SHORT_WAITS = 6
SAMPLE_EVENT = 7
SAMPLE_TRUNCATED = 1
SAMPLE_NO_THREAD_STATE = 2
SAMPLE_UNREADABLE = 4
SAMPLE_THREADS_UNSEARCHED = 8
SAMPLE_CUT_SHORT = 16
SAMPLE_HOLDS_GIL = 32
SAMPLE_CHANGED = 64
SAMPLE_UNREGISTERED = 128
GIL_SIZE = 208
GIL_LAST_HOLDER = 8  # struct _gil_runtime_state: the thread state that took it last
GIL_LOCKED = 16  # whether it is taken now
# struct sample_event, up to its frames: timestamp, weight, thread_id, address, pid, tid, depth, kind,
# flags, syscall
SAMPLE_HEAD = struct.Struct("<QQQQIIHBBi")
# struct sample_frame: code, instruction (owner is the walk's own)
SAMPLE_FRAME = struct.Struct("<Qi4x")
# with ASYNC_TASKS (--async): code, instruction, the tag of the generator owning the frame
TAGGED_SAMPLE_FRAME = struct.Struct("<QiI")

CODE_TEXT_MAX = 256
LINETABLE_MAX = 16384
CODE_NAME_UNREADABLE = 1
CODE_FILE_UNREADABLE = 2
CODE_LINETABLE = 4
# struct code_event, up to its line table: code, address, pid, firstlineno, name_length,
# file_length, linetable_size, linetable_read, version, name_kind, file_kind, flags, name, file
CODE_EVENT_HEAD = struct.Struct(f"<QQIiIIIIHBBB3xI4x{CODE_TEXT_MAX}s{CODE_TEXT_MAX}s")
