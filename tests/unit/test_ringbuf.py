"""The ring buffer reader, on a file laid out as the kernel maps a BPF ring buffer."""

import mmap
import struct

from pybpftrace.ringbuf import RingBuffer

RECORD = struct.Struct("<QI4x")  # 16 bytes: a stride of 24 with the header
SIZE = mmap.PAGESIZE  # the data area
BUSY = 1 << 31


def ring_file(tmp_path, records, consumer=0):
    """A ring with records written from `consumer` on, as (value, flags), wrapping around the
    data area as the kernel writes them (the file holds a second, unused copy of it)."""
    page = mmap.PAGESIZE
    data = bytearray(2 * SIZE)
    position = consumer
    for value, flags in records:
        record = struct.pack("<II", RECORD.size | flags, 0) + RECORD.pack(value, value * 2)
        for offset, byte in enumerate(record):
            data[(position + offset) % SIZE] = byte
            data[(position + offset) % SIZE + SIZE] = byte
        position += 24
    path = tmp_path / "ring"
    path.write_bytes(struct.pack("<Q", consumer).ljust(page, b"\0") + struct.pack("<Q", position).ljust(page, b"\0")
                     + bytes(data))
    return path


def drain(path, **options):
    with open(path, "r+b") as stream:
        ring = RingBuffer(stream.fileno(), SIZE, RECORD)
        try:
            return ring.drain(**options), struct.unpack("<Q", path.read_bytes()[:8])[0]
        finally:
            ring.close()


def test_committed_records_in_one_call(tmp_path):
    records, consumer = drain(ring_file(tmp_path, [(1, 0), (2, 0), (3, 0)]))
    assert records == [(1, 2), (2, 4), (3, 6)]
    assert consumer == 72


def test_stops_at_the_first_busy_record(tmp_path):
    records, consumer = drain(ring_file(tmp_path, [(1, 0), (2, BUSY), (3, 0)]))
    assert records == [(1, 2)]
    assert consumer == 24  # the busy one is read next time


def test_limit_and_until(tmp_path):
    path = ring_file(tmp_path, [(n, 0) for n in range(10)])
    assert drain(path, limit=4) == ([(n, n * 2) for n in range(4)], 96)
    assert drain(ring_file(tmp_path, [(n, 0) for n in range(10)]), until=48)[0] == [(0, 0), (1, 2)]


def test_a_record_across_the_end_of_the_data_area(tmp_path):
    start = SIZE - 24 * 2 - 8  # the third record wraps
    records, consumer = drain(ring_file(tmp_path, [(1, 0), (2, 0), (3, 0)], consumer=start))
    assert records == [(1, 2), (2, 4), (3, 6)]
    assert consumer == start + 72
