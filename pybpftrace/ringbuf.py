"""A BPF ring buffer read straight from its memory mapping, many records per call.

The kernel maps a ring buffer as one consumer page (ours to write), one producer page, and the
data area twice in a row, so a record that wraps around the end is still contiguous. Each
record starts with an 8-byte header: its length with a busy bit (reserved, not yet submitted)
and a discard bit, then its data, padded to 8 bytes.
"""

from __future__ import annotations

import mmap
import struct

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
_POSITION = struct.Struct("<Q")
_HEADER_LENGTH = struct.Struct("<I")


class RingBuffer:
    def __init__(self, map_fd: int, size: int, record: struct.Struct):
        """size: the data area in bytes (a power of two); record: the one layout it carries."""
        page = mmap.PAGESIZE
        self.fd = map_fd
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._mask = size - 1
        self._record = record

    def producer_position(self) -> int:
        return _POSITION.unpack_from(self._producer, 0)[0]

    def drain(self, until: int | None = None, limit: int | None = None) -> list[tuple]:
        """Submitted records (up to position `until`, at most `limit`), unpacked, in order."""
        consumer = _POSITION.unpack_from(self._consumer, 0)[0]
        producer = self.producer_position() if until is None else until
        data, mask = self._data, self._mask
        unpack = self._record.unpack_from
        header = _HEADER_LENGTH.unpack_from
        records: list[tuple] = []
        while consumer < producer and (limit is None or len(records) < limit):
            position = consumer & mask
            (length,) = header(data, position)
            if length & BUSY_BIT:
                break
            if not length & DISCARD_BIT:
                records.append(unpack(data, position + HEADER_SIZE))
            length &= ~(BUSY_BIT | DISCARD_BIT)
            consumer += (length + HEADER_SIZE + 7) & ~7
        _POSITION.pack_into(self._consumer, 0, consumer)
        return records

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()
