"""A BPF ring buffer read straight from its memory mapping, many records per call.

The kernel maps a ring buffer as one consumer page (ours to write), one producer page, and the
data area (twice in a row, if asked: we map it once, since both views would count in our
resident memory, and join the two ends of a batch that wraps). Each record starts with an
8-byte header: its length, whose top bits say busy (reserved, not yet submitted) and
discarded, then its data, padded to 8 bytes. A pybpftrace ring carries records of one layout
and never discards one, so records sit a fixed stride apart: the committed ones before the
first still busy are unpacked in one call.
"""

from __future__ import annotations

import mmap
import struct

HEADER_SIZE = 8
_POSITION = struct.Struct("<Q")


class RingBuffer:
    def __init__(self, map_fd: int, size: int, record: struct.Struct):
        """size: the data area in bytes (a power of two); record: the one layout it carries."""
        page = mmap.PAGESIZE
        self.fd = map_fd
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._producer = mmap.mmap(map_fd, page + size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._size = size
        self._mask = size - 1
        self._stride = (record.size + HEADER_SIZE + 7) & ~7
        self._records = struct.Struct(f"{record.format[0]}{HEADER_SIZE}x{record.format[1:]}"
                                      f"{self._stride - HEADER_SIZE - record.size}x")

    def producer_position(self) -> int:
        return _POSITION.unpack_from(self._producer, 0)[0]

    def consumer_position(self) -> int:
        return _POSITION.unpack_from(self._consumer, 0)[0]

    def drain(self, until: int | None = None, limit: int | None = None) -> list[tuple]:
        """The committed records (up to position `until`, at most `limit`), unpacked, in order."""
        consumer = _POSITION.unpack_from(self._consumer, 0)[0]
        producer = self.producer_position() if until is None else until
        count = (producer - consumer) // self._stride
        if limit is not None:
            count = min(count, limit)
        if count <= 0:
            return []
        start = consumer & self._mask
        end = start + count * self._stride
        if end <= self._size:
            chunk = self._data[start:end]
        else:  # across the end of the data area: join its two pieces
            chunk = memoryview(bytes(self._data[start:]) + bytes(self._data[: end - self._size]))
        flags = bytes(chunk[3 :: self._stride])  # each length's top byte: busy, discarded
        committed = len(flags) - len(flags.lstrip(b"\0"))
        records = list(self._records.iter_unpack(chunk[: committed * self._stride]))
        _POSITION.pack_into(self._consumer, 0, consumer + committed * self._stride)
        return records

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()
