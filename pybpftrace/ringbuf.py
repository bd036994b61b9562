"""BPF ring buffers read straight from their memory mapping, many records per call.

The kernel maps a ring buffer as one consumer page (ours to write), one producer page, and the
data area (twice in a row, if asked: we map it once, since both views would count in our
resident memory, and join the two ends of a batch that wraps). Each record starts with an
8-byte header: its length, whose top bits say busy (reserved, not yet submitted) and
discarded, then its data, padded to 8 bytes. Most pybpftrace rings carry records of one layout
and never discard one, so records sit a fixed stride apart: the committed ones before the
first still busy are unpacked in one call (RingBuffer), or copied out as they lie, to be
unpacked later (RingBuffer.drain_into). Rings of records of any length (stacks)
are walked a header at a time (RecordRing).
"""

from __future__ import annotations

import mmap
import struct
from typing import Callable

HEADER_SIZE = 8
BUSY = 1 << 31
DISCARDED = 1 << 30
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
        # Positions are read and written in one 8-byte access: struct's byte at a time could
        # meet the kernel's half way, and a position half written (its low bytes new, their
        # carry not yet) makes a full ring of one that is not (the kernel then drops the event it
        # was reserving room for), or records of one not yet written (we would read stale ones).
        self._positions = (memoryview(self._consumer)[:8].cast("Q"), memoryview(self._producer)[:8].cast("Q"))
        self._size = size
        self._mask = size - 1

    def producer_position(self) -> int:
        return self._positions[1][0]

    def consumer_position(self) -> int:
        return self._positions[0][0]

    def _advance(self, position: int) -> None:
        self._positions[0][0] = position

    def _bytes(self, position: int, length: int) -> memoryview:
        """length bytes of the data area from position on, joined across its end."""
        start = position & self._mask
        end = start + length
        if end <= self._size:
            return self._data[start:end]
        return memoryview(bytes(self._data[start:]) + bytes(self._data[: end - self._size]))

    def close(self) -> None:
        self._data.release()
        for position in self._positions:
            position.release()
        try:
            self._producer.close()
        except BufferError:  # a piece drain_into handed out is still held (by an output's failure on its way
            pass  # out): the mapping goes with the last reference to it
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
        self.records = struct.Struct(f"{record.format[0]}{HEADER_SIZE}x{record.format[1:]}"
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
        records = list(self.records.iter_unpack(chunk[: committed * self._stride]))
        self._advance(consumer + committed * self._stride)
        return records

    def drain_into(self, write: Callable[[memoryview], None], until: int | None = None) -> int:
        """The committed records (up to position `until`) as they lie in the ring, headers and
        all (`records` unpacks them), handed to write in one or two pieces (the data area's end
        splits them), before the kernel may reuse their place; how many."""
        consumer = self.consumer_position()
        producer = self.producer_position() if until is None else until
        count = (producer - consumer) // self._stride
        if count <= 0:
            return 0
        start, length = consumer & self._mask, count * self._stride
        pieces = [self._data[start : min(start + length, self._size)]]
        if start + length > self._size:
            pieces.append(self._data[: start + length - self._size])
        # each length's top byte (busy, discarded), the second piece's from where its first record's falls
        flags = bytes(pieces[0][3 :: self._stride])
        if len(pieces) == 2:
            flags += bytes(pieces[1][(3 - len(pieces[0])) % self._stride :: self._stride])
        committed = len(flags) - len(flags.lstrip(b"\0"))
        if committed:
            left = committed * self._stride
            for piece in pieces:
                write(piece[:left])
                left -= len(piece[:left])
                if not left:
                    break
            self._advance(consumer + committed * self._stride)
        return committed
