"""BPF ring buffers read straight from their memory mapping, many records per call.

The kernel maps a ring buffer as one consumer page (ours to write), one producer page, and the
data area (twice in a row, if asked: we map it once, since both views would count in our
resident memory, and join the two ends of a batch that wraps). Each record starts with an
8-byte header: its length, whose top bits say busy (reserved, not yet submitted) and
discarded, then its data, padded to 8 bytes. Most pybpftrace rings carry records of one layout
and never discard one, so records sit a fixed stride apart: the committed ones before the
first still busy are unpacked in one call (RingBuffer). Rings of records of any length (stacks)
are walked a header at a time (RecordRing).
"""

from __future__ import annotations

import mmap
import struct

HEADER_SIZE = 8
BUSY = 1 << 31
DISCARDED = 1 << 30
_POSITION = struct.Struct("<Q")
_HEADER = struct.Struct("<I4x")


class _Mapping:
    """A ring's consumer position (ours to write), producer position and data area."""

    def __init__(self, map_fd: int, size: int):
        """size: the data area in bytes (a power of two)."""
        page = mmap.PAGESIZE
        self.fd = map_fd
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._producer = mmap.mmap(map_fd, page + size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._size = size
        self._mask = size - 1

    def producer_position(self) -> int:
        return _POSITION.unpack_from(self._producer, 0)[0]

    def consumer_position(self) -> int:
        return _POSITION.unpack_from(self._consumer, 0)[0]

    def _advance(self, position: int) -> None:
        _POSITION.pack_into(self._consumer, 0, position)

    def _bytes(self, position: int, length: int) -> memoryview:
        """length bytes of the data area from position on, joined across its end."""
        start = position & self._mask
        end = start + length
        if end <= self._size:
            return self._data[start:end]
        return memoryview(bytes(self._data[start:]) + bytes(self._data[: end - self._size]))

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()


class RecordRing(_Mapping):
    """A ring of records of any length (a Python stack, a code object's names): each is
    returned as bytes, in order."""

    def drain(self, until: int | None = None, limit: int | None = None) -> list[bytes]:
        """The committed records (up to position `until`, at most `limit`), in order."""
        consumer = position = self.consumer_position()
        producer = self.producer_position() if until is None else until
        records: list[bytes] = []
        while position < producer and (limit is None or len(records) < limit):
            (length,) = _HEADER.unpack(self._bytes(position, HEADER_SIZE))
            if length & BUSY:
                break
            size = length & ~(BUSY | DISCARDED)
            if not length & DISCARDED:
                records.append(bytes(self._bytes(position + HEADER_SIZE, size)))
            position += (size + HEADER_SIZE + 7) & ~7
        if position != consumer:
            self._advance(position)
        return records


class RingBuffer(_Mapping):
    """A ring of records of one layout, a fixed stride apart."""

    def __init__(self, map_fd: int, size: int, record: struct.Struct):
        """size: the data area in bytes (a power of two); record: the one layout it carries."""
        super().__init__(map_fd, size)
        self._stride = (record.size + HEADER_SIZE + 7) & ~7
        self._records = struct.Struct(f"{record.format[0]}{HEADER_SIZE}x{record.format[1:]}"
                                      f"{self._stride - HEADER_SIZE - record.size}x")

    def drain(self, until: int | None = None, limit: int | None = None) -> list[tuple]:
        """The committed records (up to position `until`, at most `limit`), unpacked, in order."""
        consumer = self.consumer_position()
        producer = self.producer_position() if until is None else until
        count = (producer - consumer) // self._stride
        if limit is not None:
            count = min(count, limit)
        if count <= 0:
            return []
        chunk = self._bytes(consumer, count * self._stride)
        flags = bytes(chunk[3 :: self._stride])  # each length's top byte: busy, discarded
        committed = len(flags) - len(flags.lstrip(b"\0"))
        records = list(self._records.iter_unpack(chunk[: committed * self._stride]))
        self._advance(consumer + committed * self._stride)
        return records
