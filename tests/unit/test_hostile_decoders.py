"""Every decoder of what is copied from a target's memory or files, over arbitrary input (Hypothesis):
no exception escapes, no loop runs on past its input, and what it returns is a value the
renderers take. A process controls its memory: its objects' headers and line tables are
hostile input like any other."""

import functools
import json

from hypothesis import given, settings, strategies as st

from pybpftrace.argspec import ArgSpecError, parse_spec
from pybpftrace.escaping import shown
from pybpftrace.interpreter import read_interpreter
from pybpftrace.probes import NotAnElf, parse_note
from pybpftrace.thread_names import read_thread_names, read_thread_states
from support import HOST
from pybpftrace.linetable import LineTable
from pybpftrace.pyobjects import DECODERS, LAYOUTS, Decoder, ObjectModel, Snapshot, to_json, to_text

VERSIONS = [(3, minor) for minor in range(7, 16)]
KINDS = sorted(DECODERS)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LAYOUTS), st.sampled_from(KINDS), st.binary(max_size=256))
def test_object_decoders_take_any_bytes(layout, kind, data):
    decoder, header = DECODERS[kind]
    if len(data) < header(layout):
        return
    value = decoder(layout, data)
    if value is not None:
        text = to_text(value)
        assert isinstance(text, str) and len(text) < 4 * len(data) + 256
        json.dumps(to_json(value))


TYPES = {"PyTuple_Type": 0x1000, "PyUnicode_Type": 0x2000, "PyBytes_Type": 0x3000, "PyLong_Type": 0x4000,
         "PyFloat_Type": 0x5000, "PyBool_Type": 0x6000}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LAYOUTS), st.sampled_from(sorted(TYPES.values())), st.binary(min_size=8, max_size=128),
       st.lists(st.binary(max_size=64), max_size=4))
def test_snapshots_of_any_bytes_decode_to_something(layout, type_address, data, items):
    """An object of a known type whose every other byte is garbage (a tuple's count and items
    too): shown, never a traceback."""
    decoder = Decoder(ObjectModel(layout, TYPES, False), 0, lambda name, type_address: None)
    data = bytearray(data.ljust(layout.ob_type + 8, b"\0"))
    data[layout.ob_type:layout.ob_type + 8] = type_address.to_bytes(8, "little")
    snapshot = Snapshot(0x7000, bytes(data), tuple(Snapshot(0x8000 + i, item) for i, item in enumerate(items)))
    value = decoder.decode(snapshot)
    shown(to_text(value))
    json.dumps(to_json(value))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VERSIONS), st.binary(max_size=512), st.integers(min_value=-(1 << 31), max_value=1 << 31),
       st.integers(min_value=-64, max_value=4096))
def test_line_tables_of_any_bytes(version, table, first_line, offset):
    lines = LineTable(version, table, first_line)
    line = lines.line(offset)
    assert line is None or isinstance(line, int)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["x86-64", "aarch64", "riscv"]))
def test_argument_specs_of_any_text(spec, arch):
    """A note's argument spec is the binary's text: read, or ArgSpecError (its probe left out)."""
    try:
        parse_spec(spec, arch)
    except ArgSpecError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256), st.sampled_from([4, 8]), st.booleans())
def test_note_descriptors_of_any_bytes(desc, address_size, little_endian):
    try:
        parse_note(desc, address_size, little_endian)
    except NotAnElf:
        pass


@functools.lru_cache
def interpreter_311():
    return read_interpreter(HOST.host_python, HOST.host_python, (3, 11, 2))


MEMORY_START = 0x10000


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=4096), st.integers(min_value=0, max_value=4088))
def test_thread_lists_and_names_in_any_memory(memory, runtime_at):
    """A process's memory made of arbitrary bytes (pointers into it, out of it, into loops):
    its thread states and names are read within their bounds, whatever they hold."""
    def read(address: int, size: int):
        offset = address - MEMORY_START
        if offset < 0 or size < 0 or offset + size > len(memory):
            return None
        return memory[offset:offset + size]

    interpreter = interpreter_311()
    runtime = MEMORY_START + min(runtime_at, len(memory) - 8)
    states = read_thread_states(read, interpreter, runtime)
    assert len(states) <= 64 * 4096
    assert all(isinstance(name, str) for name in read_thread_names(read, interpreter, runtime).values())
