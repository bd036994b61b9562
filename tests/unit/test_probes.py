"""stapsdt note parsing: synthetic descriptors, and real PIE, non-PIE and shared-library
fixtures built with <sys/sdt.h>, checked against readelf as the independent reader."""

import re
import struct
import subprocess

import pytest

from support import HOST

from pybpftrace.probes import (
    Address,
    NotAnElf,
    RawNote,
    Segment,
    build_probes,
    file_offset,
    has_probe_notes,
    parse_note,
    read_probes,
)

FIXTURE = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

__extension__ unsigned short demo_ping_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short demo_pong_semaphore __attribute__((unused)) __attribute__((section(".probes")));

static volatile long sink;

__attribute__((noinline)) void ping_long(long value, long other)
{
	STAP_PROBE2(demo, ping, value, other);
	sink = value;
}

__attribute__((noinline)) void ping_int(int value, short small)
{
	STAP_PROBE2(demo, ping, value, small);
	sink = value;
}

__attribute__((noinline)) void pong(void)
{
	STAP_PROBE(demo, pong);
}

#ifndef SHARED
int main(int argc, char **argv)
{
	ping_long(argc, 7);
	ping_int(argc, 3);
	pong();
	return 0;
}
#endif
"""

BUILDS = {
    "executable": ["-no-pie", "-fno-pie"],
    "pie": ["-pie", "-fPIE"],
    "shared": ["-shared", "-fPIC", "-DSHARED"],
}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def fixture_binary(request, tmp_path_factory, require_tools):
    require_tools("gcc", "readelf", header="sys/sdt.h")
    directory = tmp_path_factory.mktemp(request.param)
    source = directory / "demo.c"
    source.write_text(FIXTURE)
    output = directory / ("demo.so" if request.param == "shared" else "demo")
    subprocess.run(["gcc", "-O2", *BUILDS[request.param], "-o", output, source], check=True)
    return request.param, str(output)


def readelf_notes(path):
    """(provider, name, location, base, semaphore, args) for each stapsdt note, per readelf."""
    text = subprocess.run(
        ["readelf", "-n", "--wide", path], check=True, capture_output=True, text=True
    ).stdout
    pattern = re.compile(
        r"Provider: (\S+)\s+Name: (\S+)\s+Location: (0x[0-9a-f]+), Base: (0x[0-9a-f]+), "
        r"Semaphore: (0x[0-9a-f]+)\s+Arguments: ?([^\n]*)"
    )
    return [
        (provider, name, int(loc, 16), int(base, 16), int(sem, 16), args.strip())
        for provider, name, loc, base, sem, args in pattern.findall(text)
    ]


def section(path, name):
    """(address, file offset) of a section, per readelf."""
    text = subprocess.run(
        ["readelf", "-S", "-W", path], check=True, capture_output=True, text=True
    ).stdout
    for line in text.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == name:
            return int(fields[3], 16), int(fields[4], 16)
    raise AssertionError(f"no {name} in {path}")


def test_notes_match_readelf(fixture_binary):
    kind, path = fixture_binary
    elf = read_probes(path)
    assert elf.pie == (kind != "executable")
    assert elf.machine == "x86-64"
    ours = [
        (probe.provider, probe.name, location.address,
         location.semaphore.address if location.semaphore else 0, location.args)
        for probe in elf.probes
        for location in probe.locations
    ]
    theirs = [(p, n, loc, sem, args) for p, n, loc, _base, sem, args in readelf_notes(path)]
    assert len(ours) == 3
    assert sorted(ours) == sorted(theirs)


def test_one_probe_name_with_several_locations_and_specs(fixture_binary):
    _, path = fixture_binary
    ping = read_probes(path).probe("ping", provider="demo")
    assert len(ping.locations) == 2
    assert len({location.args for location in ping.locations}) == 2  # long and int arguments
    assert len(ping.semaphores) == 1
    assert read_probes(path).probe("pong", provider="demo").locations[0].args == ""


def test_file_offsets_point_at_the_probe_nop_and_the_semaphore(fixture_binary):
    _, path = fixture_binary
    elf = read_probes(path)
    data = open(path, "rb").read()
    probes_address, probes_offset = section(path, ".probes")
    for probe in elf.probes:
        for location in probe.locations:
            assert data[location.offset] == 0x90  # STAP_PROBE's nop
            semaphore = location.semaphore
            assert semaphore.offset == semaphore.address - probes_address + probes_offset
            assert data[semaphore.offset : semaphore.offset + 2] == b"\0\0"


def test_parse_note_64_bit_little_endian():
    desc = struct.pack("<QQQ", 0x42512A, 0x8CC5A0, 0xA84276) + b"python\0audit\08@%rbx 8@%r15\0"
    assert parse_note(desc, 8, True) == RawNote(
        "python", "audit", 0x42512A, 0x8CC5A0, 0xA84276, "8@%rbx 8@%r15"
    )


def test_parse_note_32_bit_big_endian_without_arguments():
    desc = struct.pack(">III", 0x1000, 0x2000, 0) + b"prov\0name\0\0"
    assert parse_note(desc, 4, False) == RawNote("prov", "name", 0x1000, 0x2000, 0, "")


@pytest.mark.parametrize("desc", [b"\0" * 10, struct.pack("<QQQ", 1, 2, 3) + b"prov\0\0\0"])
def test_malformed_notes_are_refused(desc):
    with pytest.raises(NotAnElf):
        parse_note(desc, 8, True)


SEGMENTS = [
    Segment(vaddr=0x400000, offset=0, filesz=0x1000),
    Segment(vaddr=0x601000, offset=0x1000, filesz=0x200),
]


def test_prelinked_file_moves_every_address_by_the_base_shift():
    # Written when .stapsdt.base was at 0x400800; the file now has it at 0x400900.
    notes = [RawNote("p", "n", 0x400100, 0x400800, 0x601010, "8@%rdi")]
    (probe,) = build_probes(notes, base_address=0x400900, segments=SEGMENTS)
    (location,) = probe.locations
    assert (location.address, location.offset) == (0x400200, 0x200)
    assert location.semaphore == Address(0x601110, 0x1110)


def test_no_stapsdt_base_section_means_no_shift_and_no_semaphore():
    (probe,) = build_probes([RawNote("p", "n", 0x400100, 0x400800, 0, "")], None, SEGMENTS)
    assert probe.locations[0].address == 0x400100
    assert probe.semaphores == []


def test_address_outside_loadable_segments():
    with pytest.raises(NotAnElf):
        file_offset(0x900000, SEGMENTS)


def test_cpython_311_of_this_machine(host_python):
    elf = read_probes(host_python)
    assert elf.probe("function__entry").locations[0].args == "8@%rbp 8@%r12 -4@%eax"
    assert sorted(elf.names()) == sorted(
        ["audit", "gc__done", "gc__start", "line", "import__find__load__start",
         "import__find__load__done", "function__entry", "function__return"]
    )


def test_defined_symbols_match_readelf(require_tools):
    from elftools.elf.elffile import ELFFile

    from pybpftrace.probes import defined_symbols

    require_tools("readelf")
    table = subprocess.run(["readelf", "--dyn-syms", "-W", HOST.host_python], capture_output=True,
                           text=True, check=True).stdout
    wanted = ("Py_Initialize", "Py_Version", "Py_FatalError", "PyUnicode_Type", "_Py_NoneStruct", "no_such_symbol")
    expected = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[7] in wanted and fields[6] != "UND":
            expected[fields[7]] = int(fields[1], 16)
    with open(HOST.host_python, "rb") as stream:
        assert defined_symbols(ELFFile(stream), wanted) == expected
    assert len(expected) == 5


def test_probe_notes_found_from_the_section_headers_alone(fixture_binary, host_python):
    """The quick check --all makes of every mapped file agrees with reading it whole."""
    for path in (fixture_binary[1], host_python, "/bin/true", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        assert has_probe_notes(str(path)) == bool(read_probes(str(path)).probes), path
