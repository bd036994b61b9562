"""The ring buffers of one trace, and the order they are drained in: what an event refers to
(names, code objects, the stack it fired in) is submitted before the event, so draining those
first, up to the events ring's position noted before, gives every event drained what it needs."""

from __future__ import annotations

import mmap
import struct
from typing import Callable, Optional

from .codes import Codes
from .events import FORK_EVENT, NAMES_EVENT, PROCESS_EVENT, SAMPLE_HEAD, Names
from .ringbuf import RecordRing, RingBuffer

NAMES_PAGES = 2048  # 8 MiB: the names first seen between two drains (a new process sends thousands)
CODES_PAGES = 1024  # 4 MiB: the code objects first seen between two drains, line tables and all
FORKS_PAGES = 1
PROCESS_PAGES = 64  # bpf/sampler.h: execs and, under roots, every fork on the machine
# At most this many records a drain, so that signals and the deadline are seen in time; also
# what a drain holds in memory at once, as tuples and then lines: a larger batch raises a
# streaming tracer's peak RSS and consumes no more events.
MAX_BATCH = 8192


def pages_for(mebibytes: float) -> int:
    """Ring buffer pages for about this many MiB: a power of two, as the kernel wants."""
    pages = max(1, int(mebibytes * (1 << 20)) // mmap.PAGESIZE)
    return 1 << (pages - 1).bit_length()


class SessionRings:
    """The program's rings this trace reads: events (one layout, or records of any length),
    names, and, as the program has them, code objects, the stacks events fired in, forks and
    processes to register."""

    def __init__(self, program, events: Optional[str], layout: Optional[struct.Struct], pages: int,
                 codes: bool, stacks: bool, forks: bool, processes: bool, hook_forks: bool = False):
        self._program = program
        self._incarnations = program.table("incarnations") if program.has_table("incarnations") else None
        self.names = Names()
        self.codes = Codes()
        # the stacks that events fired in (--stacks), ahead of their events: by (tid, timestamp)
        self.event_stacks: dict[tuple[int, int], bytes] = {}
        self.events = self._ring(events, pages, layout) if events else None
        self._names = self._ring("names", NAMES_PAGES, NAMES_EVENT)
        self.forks = self._ring("forks", FORKS_PAGES, FORK_EVENT) if forks else None
        self.process_events = self._ring("process_events", PROCESS_PAGES, PROCESS_EVENT) if processes else None
        self._codes = self._ring("codes", CODES_PAGES, None) if codes else None
        self._stacks = self._ring("samples", pages, None) if stacks else None
        self._hook_forks = self._ring("hook_forks", FORKS_PAGES, FORK_EVENT) if hook_forks else None

    def _ring(self, name: str, pages: int, layout: Optional[struct.Struct]) -> RingBuffer | RecordRing:
        fd, size = self._program.table(name).map_fd, pages * mmap.PAGESIZE
        return RingBuffer(fd, size, layout) if layout else RecordRing(fd, size)

    def pollable(self) -> list:
        """The rings whose data wakes the run loop."""
        return [ring for ring in (self.events, self._names, self._codes, self._stacks, self.forks, self.process_events,
                                  self._hook_forks) if ring]

    def hook_forks_told(self) -> list[tuple[int, int]]:
        """The forks of hooked processes told since last asked: (parent, child)."""
        return self._hook_forks.drain() if self._hook_forks else []

    def pending(self) -> bool:
        """Whether a ring holds records not yet read. The kernel wakes a reader only for a
        record committed where the reader had caught up to: records committed while a batch was
        being read (or past the batch's end) wake nobody, and must be looked for."""
        return any(ring.consumer_position() < ring.producer_position() for ring in self.pollable())

    def drain_names(self) -> None:
        while records := self._names.drain(limit=MAX_BATCH):
            for record in records:
                self.names.add(record)

    def drain_codes(self) -> None:
        """The code objects announced so far: the kernel announces one before it counts or
        sends anything of it, so a count read before this is named after it."""
        if self._codes:
            for record in self._codes.drain():
                self.codes.add(record, self._incarnation_of)

    def _incarnation_of(self, pid: int) -> int:
        """pid's live incarnation (lifetimes.h), 0 where it has none: a process whose calls
        are not followed, or that has exited."""
        if self._incarnations is None:
            return 0
        value = self._incarnations.get(self._incarnations.Key(pid))
        return value.value if value is not None else 0

    def drain(self, consume: Callable[[list], None], copy: Optional[Callable[[memoryview], None]] = None) -> int:
        """One batch of events into consume (or, as they lie in the ring, into copy), after
        everything they refer to; how many."""
        until = self.events.producer_position() if self.events else 0
        self.drain_names()
        self.drain_codes()
        if self._stacks:
            for record in self._stacks.drain():
                timestamp, _, _, _, _, tid = SAMPLE_HEAD.unpack_from(record)[:6]
                self.event_stacks[(tid, timestamp)] = record
        if not self.events:
            return 0
        if copy:
            return self.events.drain_into(copy, until)
        records = self.events.drain(until, limit=MAX_BATCH)
        if records:
            consume(records)
        return len(records)

    def producer_position(self) -> int:
        return self.events.producer_position() if self.events else 0

    def consumer_position(self) -> int:
        return self.events.consumer_position() if self.events else 0

    def close(self) -> None:
        for ring in filter(None, (self.events, self._names, self.forks, self._codes, self.process_events,
                                  self._stacks, self._hook_forks)):
            ring.close()
