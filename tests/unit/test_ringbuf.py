"""The ring buffer reader, on a file laid out as the kernel maps a BPF ring buffer."""

import mmap
import struct

from pybpftrace.ringbuf import BUSY, DISCARDED, RecordRing, RingBuffer

RECORD = struct.Struct("<QI4x")  # 16 bytes: a stride of 24 with the header
SIZE = mmap.PAGESIZE  # the data area


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


def drain_into(path):
    """The bytes drain_into hands out, unpacked, and the consumer position after."""
    pieces = []
    with open(path, "r+b") as stream:
        ring = RingBuffer(stream.fileno(), SIZE, RECORD)
        try:
            count = ring.drain_into(lambda piece: pieces.append(bytes(piece)))
            records = list(ring.records.iter_unpack(b"".join(pieces)))
        finally:
            ring.close()
    assert count == len(records)
    return records, len(pieces), struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_records_copied_as_they_lie_across_the_end_of_the_data_area(tmp_path):
    start = SIZE - 24 * 2 - 8  # the third record wraps
    path = ring_file(tmp_path, [(n, 0) for n in range(1, 6)], consumer=start)
    assert drain_into(path) == ([(n, n * 2) for n in range(1, 6)], 2, start + 120)


def test_records_copied_up_to_the_first_busy_one_past_the_end(tmp_path):
    start = SIZE - 24 * 2 - 8  # the third record wraps, the fourth is busy
    path = ring_file(tmp_path, [(1, 0), (2, 0), (3, 0), (4, BUSY), (5, 0)], consumer=start)
    assert drain_into(path) == ([(1, 2), (2, 4), (3, 6)], 2, start + 72)
    assert drain_into(ring_file(tmp_path, [(1, BUSY)])) == ([], 0, 0)


def record_ring_file(tmp_path, payloads, consumer=0, flags=None):
    """A ring of records of any length written from `consumer` on (each padded to 8 bytes),
    wrapping around the data area."""
    page = mmap.PAGESIZE
    data = bytearray(2 * SIZE)
    position = consumer
    for index, payload in enumerate(payloads):
        header = struct.pack("<II", len(payload) | (flags or {}).get(index, 0), 0)
        record = header + payload + b"\0" * (-len(payload) % 8)
        for offset, byte in enumerate(record):
            data[(position + offset) % SIZE] = byte
            data[(position + offset) % SIZE + SIZE] = byte
        position += len(record)
    path = tmp_path / "ring"
    path.write_bytes(struct.pack("<Q", consumer).ljust(page, b"\0") + struct.pack("<Q", position).ljust(page, b"\0")
                     + bytes(data))
    return path


def drain_records(path, **options):
    with open(path, "r+b") as stream:
        ring = RecordRing(stream.fileno(), SIZE)
        try:
            return ring.drain(**options), struct.unpack("<Q", path.read_bytes()[:8])[0]
        finally:
            ring.close()


def test_records_of_any_length(tmp_path):
    payloads = [bytes([n % 256]) * n for n in (1, 8, 13, 300)]
    start = SIZE - 40  # the third record wraps around the data area's end
    records, consumer = drain_records(record_ring_file(tmp_path, payloads, consumer=start))
    assert records == payloads
    assert consumer == start + sum(8 + ((len(p) + 7) & ~7) for p in payloads)


def test_record_ring_stops_at_a_busy_record_and_skips_discarded_ones(tmp_path):
    payloads = [b"a" * 5, b"b" * 9, b"c" * 3, b"d" * 2]
    path = record_ring_file(tmp_path, payloads, flags={1: DISCARDED, 2: BUSY})
    records, consumer = drain_records(path)
    assert records == [b"a" * 5]
    assert consumer == 16 + 24  # up to the busy one, past the discarded one


def test_record_ring_limit(tmp_path):
    records, consumer = drain_records(record_ring_file(tmp_path, [b"x" * 8] * 5), limit=2)
    assert records == [b"x" * 8] * 2 and consumer == 32
