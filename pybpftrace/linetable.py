"""Line numbers from a code object's line table, as each CPython version encodes it: the map from
an instruction's byte offset to its source line.

- 3.6-3.9, `co_lnotab`: pairs of (bytecode bytes, line delta as a signed byte);
- 3.10, `co_linetable` (PEP 626): pairs of (bytecode bytes, line delta), a delta of -128 meaning
  the instructions have no line;
- 3.11+, the location table (CPython's Objects/locations.md): entries of a header byte (a
  marker bit, a 4-bit code, the length in code units less one) and varints, of which only the
  line is kept here.
"""

from __future__ import annotations

import bisect
from typing import Iterator, Optional

Version = tuple[int, int]
NO_LINE = -1


def _signed_byte(value: int) -> int:
    return value - 256 if value >= 128 else value


def lnotab_ranges(table: bytes, first_line: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, line) byte ranges of a 3.6-3.9 co_lnotab; the last runs to the end."""
    line, start, address = first_line, 0, 0
    for index in range(0, len(table) - 1, 2):
        increment, delta = table[index], _signed_byte(table[index + 1])
        if increment:
            yield start, address + increment, line
            start = address + increment
        address += increment
        line += delta
    yield start, 1 << 62, line


def linetable_310_ranges(table: bytes, first_line: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, line) byte ranges of a 3.10 co_linetable."""
    line, end = first_line, 0
    for index in range(0, len(table) - 1, 2):
        length, delta = table[index], _signed_byte(table[index + 1])
        start, end = end, end + length
        if delta == -128:
            shown = NO_LINE
        else:
            line += delta
            shown = line
        if length:
            yield start, end, shown


def _varint(table: bytes, position: int) -> tuple[int, int]:
    """An unsigned varint of 6-bit chunks, the 0x40 bit saying another follows."""
    value = shift = 0
    while True:
        byte = table[position]
        position += 1
        value |= (byte & 0x3F) << shift
        shift += 6
        if not byte & 0x40:
            return value, position


def _svarint(table: bytes, position: int) -> tuple[int, int]:
    value, position = _varint(table, position)
    return (-(value >> 1) if value & 1 else value >> 1), position


def location_table_ranges(table: bytes, first_line: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, line) byte ranges of a 3.11+ location table."""
    line, address, position = first_line, 0, 0
    while position < len(table):
        header = table[position]
        position += 1
        code = (header >> 3) & 0x0F
        length = ((header & 0x07) + 1) * 2  # code units are 2 bytes
        if code == 15:  # no location
            shown = NO_LINE
        elif code == 14:  # long form: line delta, end line delta, column, end column
            delta, position = _svarint(table, position)
            for _ in range(3):
                _, position = _varint(table, position)
            line += delta
            shown = line
        elif code == 13:  # no column: line delta
            delta, position = _svarint(table, position)
            line += delta
            shown = line
        elif code >= 10:  # one line form: delta code - 10, then column and end column
            line += code - 10
            position += 2
            shown = line
        else:  # short form: same line, one byte of columns
            position += 1
            shown = line
        yield address, address + length, shown
        address += length


def ranges(version: Version, table: bytes, first_line: int) -> Iterator[tuple[int, int, int]]:
    if version >= (3, 11):
        return location_table_ranges(table, first_line)
    if version == (3, 10):
        return linetable_310_ranges(table, first_line)
    return lnotab_ranges(table, first_line)


class LineTable:
    """A code object's lines by byte offset of instruction. The table is decoded when a line is
    first asked for: most code objects announced (every import of every Python traced) never
    are, and decoding them all as they came cost a busy tracer most of its time."""

    def __init__(self, version: Version, table: bytes, first_line: int):
        self._encoded: Optional[tuple[Version, bytes, int]] = (version, table, first_line)
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._lines: list[int] = []

    def _decode(self, version: Version, table: bytes, first_line: int) -> None:
        try:
            for start, end, line in ranges(version, table, first_line):
                self._starts.append(start)
                self._ends.append(end)
                self._lines.append(line)
        except IndexError:  # a table cut short: the ranges decoded so far stand
            pass

    def line(self, offset: int) -> Optional[int]:
        """The line of the instruction at this byte offset; None where the table does not
        cover it (a table cut short), NO_LINE where the instruction has no line."""
        if self._encoded is not None:
            self._decode(*self._encoded)
            self._encoded = None
        index = bisect.bisect_right(self._starts, offset) - 1
        if index < 0 or offset >= self._ends[index]:
            return None
        return self._lines[index]
