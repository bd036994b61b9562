"""Any ELF file a process maps is read by root, and any local user can map one: crafted
headers, sizes and offsets (the file patched at random where the parse looks) give an answer
or NotAnElf (Unsupported for an interpreter), never another exception, never an unbounded read."""

import functools
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings, strategies as st

from pybpftrace.errors import Unsupported
from pybpftrace.interpreter import read_interpreter
from pybpftrace.probes import NotAnElf, has_probe_notes, read_probes
from pybpftrace.target import _read_facts, linked_libpython
from support import HOST
from test_probes import BUILDS, FIXTURE

HEADER_FIELDS = {  # Elf64_Ehdr: offset, size
    "e_phoff": (0x20, 8), "e_shoff": (0x28, 8), "e_phentsize": (0x36, 2), "e_phnum": (0x38, 2),
    "e_shentsize": (0x3A, 2), "e_shnum": (0x3C, 2), "e_shstrndx": (0x3E, 2),
}
SECTION_FIELDS = {"sh_name": (0, 4), "sh_type": (4, 4), "sh_offset": (0x18, 8), "sh_size": (0x20, 8),
                  "sh_link": (0x28, 4), "sh_entsize": (0x38, 8)}
HOSTILE_VALUES = st.sampled_from([0, 1, 0x7F, 0xFFFF, 1 << 31, (1 << 32) - 1, 1 << 40, 1 << 62, (1 << 64) - 1])


@functools.lru_cache
def places(path):
    """Where a parse looks: the header's fields, and each section header's fields."""
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        found = dict(HEADER_FIELDS)
        for index, section in enumerate(elf.iter_sections()):
            for field, (offset, size) in SECTION_FIELDS.items():
                found[f"{section.name}.{field}"] = (elf["e_shoff"] + index * elf["e_shentsize"] + offset, size)
    return found


def patched(source, target, patches):
    shutil.copyfile(source, target)
    with open(target, "r+b") as stream:
        for (offset, size), value in patches:
            stream.seek(offset)
            stream.write(struct.pack({2: "<H", 4: "<I", 8: "<Q"}[size], value & ((1 << (8 * size)) - 1)))


def patches_of(places_found):
    return st.lists(st.tuples(st.sampled_from(sorted(places_found.values())), HOSTILE_VALUES), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, require_tools):
    require_tools("gcc", header="sys/sdt.h")
    directory = tmp_path_factory.mktemp("hostile")
    (directory / "demo.c").write_text(FIXTURE)
    subprocess.run(["gcc", "-O2", *BUILDS["pie"], "-o", directory / "demo", directory / "demo.c"], check=True)
    return str(directory / "demo")



@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_crafted_binary_is_read_or_refused(demo, tmp_path, data):
    target = tmp_path / "crafted"
    patched(demo, target, data.draw(patches_of(places(demo))))
    assert has_probe_notes(str(target)) in (True, False)
    for read in (read_probes, _read_facts, linked_libpython):
        try:
            read(str(target))
        except NotAnElf:
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_crafted_interpreter_is_read_or_refused(tmp_path, data):
    target = tmp_path / "python"
    patched(HOST.host_python, target, data.draw(patches_of(places(HOST.host_python))))
    try:
        _read_facts(str(target))
    except NotAnElf:
        pass
    try:
        read_interpreter(str(target), str(target), (3, 11, 2))
    except (NotAnElf, Unsupported):
        pass


def test_an_untouched_binary_reads_as_before(demo):
    assert has_probe_notes(demo)
    assert sorted(probe.name for probe in read_probes(demo).probes) == ["ping", "pong"]
