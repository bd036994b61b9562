"""Which CPython an ELF file holds, and what its probes can do: one table for every version.

The probes present are read from the notes; what they mean, and the quirks no note shows
(3.11 fires function__entry only while the line semaphore is raised), live here.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Optional

from elftools.elf.elffile import ELFFile

from .probes import file_offset, load_segments

Version = tuple[int, int, int]

# PY_VERSION as compiled in, e.g. "3.9.2" or "3.15.0a1+"; the linker may have merged it into
# the tail of a longer string that ends the same way ("/root/.pyenv/versions/3.9.18").
_PY_VERSION_TEXT = re.compile(rb"[\x00/](3\.(\d{1,2})\.(\d{1,2})(?:(?:a|b|rc)\d+)?\+?)\x00")


@dataclass(frozen=True)
class Quirks:
    """What one range of CPython versions does with its probes that the notes do not show."""

    first: tuple[int, int]
    last: tuple[int, int]
    # function__entry fires only while the line probe's semaphore is raised (gh-98894)
    entry_needs_line_semaphore: bool = False
    # function__entry also fires when a generator or coroutine is created, with no return;
    # this function runs right after such an entry, and only then
    generator_creation_marker: Optional[str] = None
    # function__return also fires with no entry (a generator resumed by throw(); a specialized
    # __init__ call and the shim frame under it): returns must be matched with entries
    returns_without_entry: bool = False

    @property
    def markers(self) -> tuple[str, ...]:
        """Functions whose entries must be probed for this version's events to be right."""
        return tuple(filter(None, (self.generator_creation_marker,)))


TABLE = (
    Quirks((3, 6), (3, 10)),
    Quirks((3, 11), (3, 11), entry_needs_line_semaphore=True),
    Quirks((3, 12), (3, 14)),
    Quirks((3, 15), (3, 99), generator_creation_marker="_Py_MakeCoro", returns_without_entry=True),
)

NONE = Quirks((0, 0), (0, 0))

# Why a CPython with probes can lack some: what happened to each probe, by version.
PROBE_HISTORY = {
    "function__entry": "CPython 3.12 removed the function probes when PEP 669 monitoring "
    "replaced the interpreter's tracing hooks, and 3.15 restored them",
    "function__return": "CPython 3.12 removed the function probes when PEP 669 monitoring "
    "replaced the interpreter's tracing hooks, and 3.15 restored them",
    "line": "CPython 3.12 removed the line probe with PEP 669, and 3.15 did not restore it",
}


# The versions whose stacks the kernel's frame walker reads (pybpftrace/interpreter.py's tables).
STACKS_FIRST = (3, 7)
STACKS_LAST = (3, 15)


def stacks_readable(version: Optional[Version]) -> bool:
    return version is not None and STACKS_FIRST <= version[:2] <= STACKS_LAST


def quirks(version: Optional[Version]) -> Quirks:
    """The table row of a version; an unknown version has none."""
    if version is not None:
        for row in TABLE:
            if row.first <= version[:2] <= row.last:
                return row
    return NONE


def format_version(version: Optional[Version]) -> str:
    return "CPython " + (".".join(map(str, version)) if version else "(version unknown)")


INTERPRETER_SYMBOLS = ("Py_Initialize", "Py_InitializeEx")  # defined, not imported
VERSION_SYMBOL = "Py_Version"  # PY_VERSION_HEX, exported since 3.11


def is_interpreter(symbols: dict[str, int]) -> bool:
    """Whether a file defining these symbols holds a CPython interpreter (not just links to
    one)."""
    return any(name in symbols for name in INTERPRETER_SYMBOLS)


def _version_from_hex(elf: ELFFile, address: int) -> Version:
    stream = elf.stream
    stream.seek(file_offset(address, load_segments(elf)))
    fmt = "<I" if elf.little_endian else ">I"
    (hexversion,) = struct.unpack(fmt, stream.read(4))
    return (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)


def _version_from_text(elf: ELFFile) -> Optional[Version]:
    """Find PY_VERSION among the read-only strings; several x.y.z strings can appear, so
    keep the one whose "pythonX.Y" also appears (library paths, the soname)."""
    section = elf.get_section_by_name(".rodata")
    if section is None:
        return None
    data = section.data()
    best: Optional[Version] = None
    best_score = 0
    for match in _PY_VERSION_TEXT.finditer(data):
        minor, micro = int(match.group(2)), int(match.group(3))
        score = data.count(b"python3.%d" % minor)
        if score > best_score:
            best, best_score = (3, minor, micro), score
    return best


def detect_version(elf: ELFFile, symbols: dict[str, int]) -> Optional[Version]:
    """The CPython version compiled into this interpreter file (symbols: its defined
    symbols, VERSION_SYMBOL among them if it has it), or None."""
    if VERSION_SYMBOL in symbols:
        return _version_from_hex(elf, symbols[VERSION_SYMBOL])
    return _version_from_text(elf)
