"""USDT probes of one ELF file, read from its `.note.stapsdt` notes with pyelftools.

A stapsdt note holds three link-time addresses (probe location, the `.stapsdt.base` address
when the note was written, semaphore) and three strings (provider, name, argument spec). If
the file was prelinked, `.stapsdt.base` moved and every address moves with it. A uprobe is
placed at a file offset, so addresses are mapped through the PT_LOAD program headers.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Optional, TypeVar

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_NOTE_N_TYPE
from elftools.elf.sections import NoteSection

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
NOTE_OWNER = "stapsdt"
NT_STAPSDT = 3

MACHINES = {"EM_X86_64": "x86-64", "EM_AARCH64": "aarch64"}


T = TypeVar("T")


class NotAnElf(ValueError):
    """The file is not an ELF object we can read."""


@dataclass(frozen=True)
class RawNote:
    """One stapsdt note as stored, before any address adjustment."""

    provider: str
    name: str
    location: int
    base: int
    semaphore: int
    args: str


@dataclass(frozen=True)
class Address:
    address: int  # link-time virtual address
    offset: int  # offset in the file


@dataclass(frozen=True)
class Location:
    """One place in the code where the probe fires."""

    address: int
    offset: int
    args: str
    semaphore: Optional[Address]


@dataclass
class Probe:
    provider: str
    name: str
    locations: list[Location] = field(default_factory=list)

    @property
    def semaphores(self) -> list[Address]:
        """Distinct semaphores of the probe's locations (normally one, or none)."""
        seen: dict[int, Address] = {}
        for location in self.locations:
            if location.semaphore is not None:
                seen.setdefault(location.semaphore.offset, location.semaphore)
        return list(seen.values())


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int


@dataclass
class ElfProbes:
    """The probes of one ELF file, with what a tracer needs to know about the file."""

    path: str
    machine: str
    pie: bool  # ET_DYN: executable or shared object loaded at a chosen base
    probes: list[Probe]
    # a .note.stapsdt section is there but none of it reads as a probe (zeroed, or corrupt)
    damaged_notes: bool = False

    def probe(self, name: str, provider: str = "python") -> Optional[Probe]:
        for probe in self.probes:
            if probe.name == name and probe.provider == provider:
                return probe
        return None

    def names(self, provider: str = "python") -> list[str]:
        return [probe.name for probe in self.probes if probe.provider == provider]


def parse_note(desc: bytes, address_size: int, little_endian: bool) -> RawNote:
    """Decode a stapsdt note's descriptor: three addresses, then three NUL-ended strings."""
    fmt = ("<" if little_endian else ">") + ("Q" if address_size == 8 else "I") * 3
    header = struct.calcsize(fmt)
    if len(desc) < header + 3:
        raise NotAnElf("stapsdt note too short")
    location, base, semaphore = struct.unpack_from(fmt, desc)
    strings = desc[header:].split(b"\0")
    if len(strings) < 3 or not strings[1]:
        raise NotAnElf("stapsdt note without provider, name and argument strings")
    provider, name, args = (s.decode("utf-8", "replace") for s in strings[:3])
    return RawNote(provider, name, location, base, semaphore, args)


def file_offset(address: int, segments: Iterable[Segment]) -> int:
    """The file offset holding the byte at this virtual address."""
    for segment in segments:
        if segment.vaddr <= address < segment.vaddr + segment.filesz:
            return address - segment.vaddr + segment.offset
    raise NotAnElf(f"address {address:#x} is in no loadable segment")


def build_probes(
    notes: Iterable[RawNote], base_address: Optional[int], segments: list[Segment]
) -> list[Probe]:
    """Group notes into probes (one name may have many locations), adjusting for prelink."""
    probes: dict[tuple[str, str], Probe] = {}
    for note in notes:
        shift = base_address - note.base if base_address is not None and note.base else 0
        address = note.location + shift
        semaphore = None
        if note.semaphore:
            semaphore_address = note.semaphore + shift
            semaphore = Address(semaphore_address, file_offset(semaphore_address, segments))
        location = Location(address, file_offset(address, segments), note.args, semaphore)
        key = (note.provider, note.name)
        probes.setdefault(key, Probe(note.provider, note.name)).locations.append(location)
    return list(probes.values())


def _raw_notes(elf: ELFFile) -> tuple[list[RawNote], bool]:
    """The stapsdt notes, and whether a note section is there that holds none we can read."""
    section = elf.get_section_by_name(NOTE_SECTION)
    if section is None:
        return [], False
    if not isinstance(section, NoteSection):  # named so, but of another type
        return [], True
    notes = []
    for note in section.iter_notes():
        note_type = note["n_type"]
        if isinstance(note_type, str):  # pyelftools names type 3 after NT_GNU_BUILD_ID
            note_type = ENUM_NOTE_N_TYPE.get(note_type)
        if note["n_name"] != NOTE_OWNER or note_type != NT_STAPSDT:
            continue
        try:
            notes.append(parse_note(note["n_descdata"], elf.elfclass // 8, elf.little_endian))
        except NotAnElf:
            continue
    return notes, not notes and section["sh_size"] > 0


def load_segments(elf: ELFFile) -> list[Segment]:
    return [
        Segment(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"])
        for seg in elf.iter_segments()
        if seg["p_type"] == "PT_LOAD"
    ]


def defined_symbols(elf: ELFFile, names: Iterable[str]) -> dict[str, int]:
    """The addresses of the named symbols this file defines (not those it imports), from
    .dynsym (else .symtab). Read with struct rather than pyelftools' symbol objects, which
    take most of a second on an interpreter's thousands of symbols."""
    section = elf.get_section_by_name(".dynsym") or elf.get_section_by_name(".symtab")
    if section is None or section["sh_entsize"] == 0:
        return {}
    strings = elf.get_section(section["sh_link"]).data()
    # A name sits at one or more string offsets (tables may share suffixes): find them all.
    offsets: dict[int, str] = {}
    for name in names:
        encoded = name.encode() + b"\0"
        start = strings.find(encoded)
        while start >= 0:
            offsets[start] = name
            start = strings.find(encoded, start + 1)
    order = "<" if elf.little_endian else ">"
    if elf.elfclass == 64:  # Elf64_Sym: name, info, other, shndx, value, size
        layout, name_at, shndx_at, value_at = f"{order}I2xHQ8x", 0, 1, 2
    else:  # Elf32_Sym: name, value, size, info, other, shndx
        layout, name_at, shndx_at, value_at = f"{order}II4x2xH", 0, 2, 1
    found = {}
    for entry in struct.iter_unpack(layout, section.data()):
        if entry[name_at] in offsets and entry[shndx_at] != 0:  # 0, SHN_UNDEF: imported
            found[offsets[entry[name_at]]] = entry[value_at]
    return found


# What pyelftools raises, besides ELFError, on a truncated or corrupt file.
# (pyelftools checks some of what it reads with assert.)
ELF_READ_ERRORS = (ELFError, struct.error, ValueError, IndexError, KeyError, OverflowError, EOFError, AssertionError)


class BoundedFile:
    """A file as pyelftools reads it, kept inside the file: a section size or offset that a
    crafted header claims (2^40 bytes, at 2^62) reads what the file holds there (nothing),
    never allocating or seeking past its end."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._size = os.fstat(stream.fileno()).st_size
        self._position = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ELFError(f"a negative file offset ({base + offset})")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._position >= self._size:
            return b""
        left = self._size - self._position
        size = left if size is None or size < 0 else min(size, left)
        self._stream.seek(self._position)
        data = self._stream.read(size)
        self._position += len(data)
        return data


def open_elf(stream: BinaryIO) -> ELFFile:
    """An ELF file read within its bounds (BoundedFile), or NotAnElf."""
    try:
        return ELFFile(BoundedFile(stream))
    except ELF_READ_ERRORS as error:
        raise NotAnElf(str(error) or type(error).__name__) from None


def parsed_elf(path: str, reader: Callable[[ELFFile, BinaryIO], T]) -> T:
    """reader(elf, stream) of the ELF file at path: NotAnElf for any damage met on the way
    (a crafted file fails here, in one line, not in a traceback)."""
    with open(path, "rb") as stream:
        try:
            elf = open_elf(stream)
            return reader(elf, elf.stream)  # the file as a BoundedFile
        except NotAnElf:
            raise
        except ELF_READ_ERRORS as error:
            raise NotAnElf(f"truncated or corrupt ({error or type(error).__name__})") from None


def read_elf_probes(elf: ELFFile, path: str) -> ElfProbes:
    base = elf.get_section_by_name(BASE_SECTION)
    notes, damaged = _raw_notes(elf)
    probes = build_probes(notes, base["sh_addr"] if base is not None else None, load_segments(elf))
    return ElfProbes(
        path=path,
        machine=MACHINES.get(elf["e_machine"], elf["e_machine"]),
        pie=elf["e_type"] == "ET_DYN",
        probes=probes,
        damaged_notes=damaged,
    )


SECTION_HEADER_SIZE = 64  # Elf64_Shdr


def has_probe_notes(path: str) -> bool:
    """Whether an ELF file has a .note.stapsdt section, read from its section headers alone:
    a thousandth of what reading it with pyelftools takes (every library of every process,
    for --all). True where the headers are not as expected: pyelftools reads those."""
    try:
        with open(path, "rb") as raw:
            stream = BoundedFile(raw)
            header = stream.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit only; else: ask pyelftools
                return True
            order = "<" if header[5] == 1 else ">"
            shoff, = struct.unpack_from(order + "Q", header, 0x28)
            entsize, count, names_index = struct.unpack_from(order + "HHH", header, 0x3A)
            if entsize < SECTION_HEADER_SIZE or names_index >= count:
                return True
            stream.seek(shoff)
            table = stream.read(entsize * count)
            if len(table) < entsize * count:
                return True
            # Elf64_Shdr: name, type, flags, addr, offset, size, ...
            names_offset, names_size = struct.unpack_from(order + "QQ", table, names_index * entsize + 0x18)
            stream.seek(names_offset)
            names = stream.read(names_size)
    except (OSError, ELFError):
        return True
    wanted = NOTE_SECTION.encode() + b"\0"
    return any(names[name:name + len(wanted)] == wanted
               for name, in (struct.unpack_from(order + "I", table, index * entsize) for index in range(count)))


def read_probes(path: str) -> ElfProbes:
    """Probes of the ELF file at path (an executable or a shared library)."""
    return parsed_elf(path, lambda elf, stream: read_elf_probes(elf, path))
