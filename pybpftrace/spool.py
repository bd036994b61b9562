"""Events held on disk between the ring and their rendering. Turning a record into a line costs
user space some microseconds, ten times what copying it costs: a stream written to files copies
each batch off the ring as it lies (ringbuf.RingBuffer.drain_into), which keeps up with what the
kernel sends, and renders it from here as time allows, between reads of the ring, the rest at
the end. What waits grows on disk, not in memory: the file has no name from its creation on."""

from __future__ import annotations

import os
import struct
import tempfile
from collections import deque
from typing import Callable


def unnamed_file(directory: str) -> int:
    """A file without a name, in directory (on the disk the output goes to, rather than a tmpfs
    in memory) where it can be made there, else in the system's temporary directory."""
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return os.dup(tempfile.TemporaryFile().fileno())


def write_at(fd: int, data, offset: int) -> None:
    """All of data (bytes or a memoryview) at offset (a write can take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.pwrite(fd, view, offset + len(data) - len(view)):]


class Spool:
    """Records of one layout, written as they lie in the ring and read back in order; actions
    marked at a point run once every record written before it has been read."""

    def __init__(self, records: struct.Struct, directory: str):
        """records: the layout of a record as it lies in the ring (ringbuf.RingBuffer.records)."""
        self._records = records
        self.directory = directory
        self._fd = unnamed_file(directory)
        self._written = 0  # bytes
        self._read = 0
        self._marks: deque[tuple[int, Callable[[], None]]] = deque()

    def write(self, piece: memoryview) -> None:
        write_at(self._fd, piece, self._written)
        self._written += len(piece)

    def mark(self, action: Callable[[], None]) -> None:
        """Run action once the records written so far are read, before any written later."""
        self._marks.append((self._written, action))

    def waiting(self) -> int:
        """Records written and not yet read."""
        return (self._written - self._read) // self._records.size

    def read(self, limit: int) -> list[tuple]:
        """Up to limit records, unpacked, in order: the actions due before them run first, and a
        batch stops at the next mark (so that reading until nothing is left runs every action)."""
        while self._marks and self._marks[0][0] <= self._read:
            self._marks.popleft()[1]()
        end = min(self._written, self._read + limit * self._records.size)
        if self._marks:
            end = min(end, self._marks[0][0])
        chunk = os.pread(self._fd, end - self._read, self._read)
        self._read += len(chunk)
        records = list(self._records.iter_unpack(chunk))
        if self._read == self._written:  # caught up: give the disk space back
            os.ftruncate(self._fd, 0)
            self._marks = deque((at - self._read, action) for at, action in self._marks)
            self._written = self._read = 0
        return records

    def close(self) -> None:
        os.close(self._fd)
