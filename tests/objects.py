"""CPython objects built as bytes the way each version lays them out (pybpftrace.pyobjects'
table, checked against the headers by test_pyobjects), and a made-up process memory to place
them in: for the unit tests of what decodes objects."""

from __future__ import annotations

import struct
from typing import Optional

from pybpftrace.pyobjects import Layout, layout_for
from pybpftrace.thread_names import KEYS_GENERAL, KEYS_UNICODE


def synthetic_str(version, text, type_address, declared=None) -> bytes:
    """A compact str as CPython lays it out (the state bitfield: kind, compact, ascii)."""
    layout = layout_for(version)
    kind = 1 if max(map(ord, text), default=0) < 256 else 2 if max(map(ord, text)) < 65536 else 4
    ascii_only = all(ord(c) < 128 for c in text)
    state = kind << 2 | 1 << 5 | ascii_only << 6
    head = struct.pack("<qQqqI", 1, type_address, declared or len(text), -1, state)
    start = layout.ascii_data if ascii_only else layout.compact_data
    codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
    return head.ljust(start, b"\0") + text.encode(codec) + b"\0" * kind


def synthetic_int(layout: Layout, value: int, type_address: int) -> bytes:
    """An int: its 30-bit digits after ob_size (±digits) or, 3.12+, lv_tag."""
    magnitude, digits = abs(value), []
    while magnitude:
        digits.append(magnitude & (2**30 - 1))
        magnitude >>= 30
    if layout.int_tag:
        size = len(digits) << 3 | (1 if value == 0 else 2 if value < 0 else 0)
    else:
        size = -len(digits) if value < 0 else len(digits)
    return struct.pack("<qQq", 1, type_address, size) + b"".join(struct.pack("<I", digit) for digit in digits or [0])


def _log2_size(count: int) -> int:
    """The smallest table whose usable two thirds hold count entries (8 at least)."""
    log2 = 3
    while (2 << log2) // 3 < count:
        log2 += 1
    return log2


def synthetic_keys(layout: Layout, entries: list[tuple[int, int]], kind: int = KEYS_UNICODE,
                   deleted: int = 0) -> bytes:
    """A PyDictKeysObject holding entries (key, value addresses; values of split keys are
    elsewhere, 0 here), then `deleted` entries whose key and value are gone."""
    entries = [*entries, *[(0, 0)] * deleted]
    log2 = _log2_size(len(entries))
    usable = (2 << log2) // 3 - len(entries)
    index_width = 1 if log2 <= 7 else 2 if log2 <= 15 else 4
    indices = b"\xff" * ((1 << log2) * index_width)  # the hash table: never read
    if layout.keys_log2:
        header = struct.pack("<qBBBxIqq", 1, log2, log2 + index_width.bit_length() - 1, kind, 0, usable, len(entries))
    else:
        kind = KEYS_GENERAL  # one entry shape before 3.11
        header = struct.pack("<qqQqq", 1, 1 << log2, 0, usable, len(entries))
    if kind == KEYS_GENERAL:
        body = b"".join(struct.pack("<qQQ", 0x5EED, key, value) for key, value in entries)
    else:
        body = b"".join(struct.pack("<QQ", key, value) for key, value in entries)
    return header + indices + body


def synthetic_values(layout: Layout, values: list[int], capacity: Optional[int] = None, valid: int = 1) -> bytes:
    """A PyDictValues: 3.13+ start with capacity, size, embedded and valid."""
    header = struct.pack("<BBBBxxxx", len(values) if capacity is None else capacity, len(values), 0, valid)
    return (header if layout.values_start else b"") + b"".join(struct.pack("<Q", value) for value in values)


def synthetic_dict(layout: Layout, type_address: int, keys: int, values: int = 0, used: int = 0) -> bytes:
    return struct.pack("<qQqQQQ", 1, type_address, used, 0, keys, values)


def synthetic_type(layout: Layout, flags: int, basicsize: int = 16, dictoffset: int = 0, cached_keys: int = 0) -> bytes:
    """A type object as far as instance attributes go: PyHeapTypeObject up to ht_cached_keys."""
    data = bytearray(max(layout.cached_keys, layout.tp_dictoffset) + 8)
    struct.pack_into("<q", data, layout.tp_basicsize, basicsize)
    struct.pack_into("<Q", data, layout.tp_flags, flags)
    struct.pack_into("<q", data, layout.tp_dictoffset, dictoffset)
    if layout.cached_keys:
        struct.pack_into("<Q", data, layout.cached_keys, cached_keys)
    return bytes(data)


class Image:
    """The memory of a made-up process: byte strings placed at addresses, a gap after each;
    a read is whole or None, like ProcessMemory's."""

    def __init__(self, start: int = 0x7F0000001000):
        self._regions: dict[int, bytes] = {}
        self._next = start

    def place(self, data: bytes, before: bytes = b"") -> int:
        """Place data (after `before`, the pre-header of an object) and return its address."""
        address = self._next + len(before)
        self._regions[self._next] = before + data
        self._next = (self._next + len(before) + len(data) + 0x1FF) & ~0xFF  # a gap before the next
        return address

    def write(self, address: int, data: bytes) -> None:
        """Change placed bytes, as the process would."""
        for start, placed in self._regions.items():
            if start <= address and address + len(data) <= start + len(placed):
                self._regions[start] = placed[: address - start] + data + placed[address - start + len(data) :]
                return
        raise AssertionError(f"nothing placed at {address:#x}")

    def read(self, address: int, size: int) -> Optional[bytes]:
        for start, data in self._regions.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start : address - start + size]
        return None
