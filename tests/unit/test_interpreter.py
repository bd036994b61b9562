"""Where each CPython keeps its threads and frames (pybpftrace/interpreter.py): the table
covers every version the walker reads, the 3.13+ debug offsets are read from the right
positions of the real binaries, and a binary whose stacks cannot be read is refused saying why."""

import re
import shutil
import struct
import subprocess
from dataclasses import fields

import pytest

from pybpftrace.errors import Unsupported
from pybpftrace.events import GENERATOR_EMBEDDED, GENERATOR_POINTER, OFFSET_NONE
from pybpftrace.interpreter import (
    DEBUG_OFFSETS, INTERP_MODULES, OBJECT_TYPE_SYMBOLS, RUNTIME_SYMBOL, TABLE, FrameLayout, layout_from_debug_offsets,
    objects_from_debug_offsets, read_interpreter,
)
from pybpftrace.probes import defined_symbols, file_offset, load_segments, open_elf
from pybpftrace.program import bpf_dir
from pybpftrace.pyobjects import layout_for
from pybpftrace.versions import STACKS_FIRST, STACKS_LAST
from support import ALL_INTERPRETERS, PYENV_MINORS, dynamic_symbols, pyenv_interpreter

# offsetof() against each version's own headers (Py_BUILD_CORE), for Debian's builds: what
# reading their _Py_DebugOffsets must give.
COMPILED = {
    (3, 13): dict(runtime_interpreters=632, interp_next=7264, interp_threads=7344, interp_gil=16, tstate_next=8,
                  tstate_frame=72, tstate_thread_id=152, tstate_native_thread_id=160, frame_previous=8, frame_code=0,
                  frame_instruction=56, frame_owner=70, code_filename=112, code_name=120, code_linetable=136,
                  code_firstlineno=68, code_instructions=200, bytes_size=16, bytes_data=32, str_state=32,
                  str_length=16, str_ascii_data=40, str_compact_data=56),
    (3, 14): dict(runtime_interpreters=808, interp_next=7272, interp_threads=7344, interp_gil=16, tstate_next=8,
                  tstate_frame=72, tstate_thread_id=152, tstate_native_thread_id=160, frame_previous=8, frame_code=0,
                  frame_instruction=56, frame_owner=74, code_filename=112, code_name=120, code_linetable=136,
                  code_firstlineno=68, code_instructions=208, bytes_size=16, bytes_data=32, str_state=32,
                  str_length=16, str_ascii_data=40, str_compact_data=56),
    (3, 15): dict(runtime_interpreters=936, interp_next=7264, interp_threads=7336, interp_gil=16, tstate_next=8,
                  tstate_frame=72, tstate_thread_id=176, tstate_native_thread_id=184, frame_previous=8, frame_code=0,
                  frame_instruction=56, frame_owner=74, code_filename=112, code_name=120, code_linetable=136,
                  code_firstlineno=68, code_instructions=208, bytes_size=16, bytes_data=32, str_state=32,
                  str_length=16, str_ascii_data=40, str_compact_data=56),
}
# PyInterpreterState's imports.modules in each binary's DWARF (python3.X-dbg).
MODULES_DWARF = {(3, 13): 7656, (3, 14): 7688, (3, 15): 7592}
DEBIAN_313_UP = [interpreter for interpreter in ALL_INTERPRETERS if interpreter.version >= (3, 13)]


def test_every_readable_version_has_a_layout():
    versions = sorted([*TABLE, *DEBUG_OFFSETS])
    assert versions == [(3, minor) for minor in range(STACKS_FIRST[1], STACKS_LAST[1] + 1)]
    assert not set(TABLE) & set(DEBUG_OFFSETS)
    assert set(INTERP_MODULES) == set(TABLE)  # 3.13+ publish where sys.modules is


def test_the_layout_fields_are_the_headers():
    """The walker's layout is filled field by field by name (sampling.py): a name the header
    lacks would be set on the Python object alone and the kernel would read 0 there."""
    header = (bpf_dir() / "events.h").read_text()
    body = re.search(r"struct py_layout \{(.*?)\n\};", header, re.S).group(1)
    declared = re.findall(r"__u\d+ (\w+)(?:\[\d+\])?;", body)
    assert [name for name in declared if name != "pad"] == sorted(
        (field.name for field in fields(FrameLayout)), key=declared.index)
    assert len(declared) - 1 == len(fields(FrameLayout))


def test_read_sizes_reach_the_last_field_read():
    """3.11: the thread state up to native_thread_id (160), the frame up to owner (69, a byte
    read as 8), the code object up to _co_firsttraceable (168)."""
    layout = TABLE[(3, 11)].with_read_sizes()
    assert (layout.tstate_read, layout.frame_read, layout.code_read) == (168, 77, 176)


@pytest.mark.parametrize("version", sorted(DEBUG_OFFSETS), ids=lambda version: f"{version[0]}.{version[1]}")
def test_each_offset_is_read_from_its_own_position(version):
    """Distinct values at every position: each field takes the one at its own."""
    known = DEBUG_OFFSETS[version]
    positions, objects = known.positions, known.objects
    every = [*positions.values(), *objects.values(), known.modules]
    assert len(set(every)) == len(every)
    data = bytearray(1024)
    for position in every:
        struct.pack_into("<Q", data, position, 1000 + position)
    layout = layout_from_debug_offsets(bytes(data), version)
    assert {name: getattr(layout, name) for name in positions} == {
        name: 1000 + position for name, position in positions.items()
    }
    object_layout, modules = objects_from_debug_offsets(bytes(data), version, layout)
    assert {name: getattr(object_layout, name) for name in objects} == {
        name: 1000 + position for name, position in objects.items()
    }
    assert modules == 1000 + known.modules
    assert (object_layout.str_state, object_layout.ascii_data) == (layout.str_state, layout.str_ascii_data)
    assert layout.code_tag_mask == (3 if version >= (3, 14) else 0)
    assert layout.cframe_current_frame == OFFSET_NONE


@pytest.mark.parametrize("interpreter", DEBIAN_313_UP, ids=str)
def test_the_real_binaries_give_the_compiled_offsets(interpreter):
    interpreter.prepare()
    found = read_interpreter(interpreter.host_python, interpreter.python, interpreter.version)
    assert {name: getattr(found.layout, name) for name in COMPILED[interpreter.version]} == COMPILED[
        interpreter.version]
    assert found.interp_modules == MODULES_DWARF[interpreter.version]
    assert found.objects == layout_for(interpreter.version)  # what they publish is the table's
    assert set(found.types) == set(OBJECT_TYPE_SYMBOLS)  # every one exported


def patched_copy(interpreter, tmp_path, position: int, value: bytes) -> str:
    """A copy of the binary with its _PyRuntime's bytes at position replaced."""
    copy = tmp_path / "python"
    shutil.copy(interpreter.host_python, copy)
    with open(copy, "r+b") as stream:
        elf = open_elf(stream)
        runtime = defined_symbols(elf, (RUNTIME_SYMBOL,))[RUNTIME_SYMBOL]
        stream.seek(file_offset(runtime, load_segments(elf)) + position)
        stream.write(value)
    return str(copy)


NOT_THIS_VERSION = ": _PyRuntime does not start with this version's _Py_DebugOffsets"


@pytest.mark.parametrize("position, value, message", [
    (16, struct.pack("<Q", 1), " is a free-threaded build, whose stacks pybpftrace does not read"),
    (0, b"ydebugpy", NOT_THIS_VERSION),
    (8, struct.pack("<Q", 0x030C00F0), NOT_THIS_VERSION),  # 3.12.0's hexversion
], ids=["free-threaded", "cookie", "version"])
def test_debug_offsets_that_do_not_fit_are_refused(tmp_path, position, value, message):
    interpreter = DEBIAN_313_UP[0]
    interpreter.prepare()
    path = patched_copy(interpreter, tmp_path, position, value)
    with pytest.raises(Unsupported) as refused:
        read_interpreter(path, "/usr/bin/python3.13", interpreter.version)
    assert str(refused.value) == f"CPython 3.13 at /usr/bin/python3.13{message}"


def test_versions_out_of_range_and_unknown_are_refused():
    with pytest.raises(Unsupported, match=r"^the CPython version of /x could not be read, so neither can its stacks$"):
        read_interpreter("/nonexistent", "/x", None)
    with pytest.raises(Unsupported, match=r"^CPython 3\.6 at /x: pybpftrace reads the stacks of CPython 3\.7 to 3\.15$"):
        read_interpreter("/nonexistent", "/x", (3, 6))


def test_the_types_objects_are_checked_against(host_python, require_tools):
    """Debian's 3.11, not a PIE (whichever Debian update it is): the addresses its .dynsym holds."""
    require_tools("nm")
    found = read_interpreter(host_python, host_python, (3, 11, 2))
    symbols = dynamic_symbols(host_python)
    assert found.types == {kind: symbols[name] for kind, name in OBJECT_TYPE_SYMBOLS.items()}
    assert {"dict", "str", "list", "set", "cell", "None", "True", "False"} <= set(found.types)
    assert (found.interp_modules, found.objects) == (888, layout_for((3, 11)))


def test_a_binary_without_the_interpreter_is_refused():
    with pytest.raises(Unsupported) as refused:
        read_interpreter(shutil.which("true"), "/bin/true", (3, 11))
    assert str(refused.value) == (
        "CPython 3.11 at /bin/true does not export _PyRuntime and PyCode_Type, which reading its stacks needs")


GENERATOR_CHECKED = [*ALL_INTERPRETERS, *filter(None, map(pyenv_interpreter, PYENV_MINORS))]


@pytest.mark.parametrize("interpreter", GENERATOR_CHECKED, ids=lambda i: f"{i}{'-' + i.suite if i.suite else ''}")
def test_the_generator_owning_a_frame_is_where_the_layout_says(interpreter):
    """--async tags each frame with its generator: checked in a live process of each version,
    against id() of a generator and of a coroutine (and a function's frame has none)."""
    if interpreter.version in TABLE:
        layout = TABLE[interpreter.version]
        code_at, owner_at = layout.frame_code, layout.frame_owner
    else:  # the generator's numbers are the table's; the frame's, what the binaries publish
        layout = layout_from_debug_offsets(bytes(1024), interpreter.version)
        code_at, owner_at = COMPILED[interpreter.version]["frame_code"], COMPILED[interpreter.version]["frame_owner"]
    assert layout.generator_kind in (GENERATOR_POINTER, GENERATOR_EMBEDDED)
    interpreter.prepare()
    checks = subprocess.run(
        interpreter.command("generator_frames.py", str(layout.generator_kind), str(layout.frame_generator),
                            str(code_at), str(owner_at)),
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")
    assert [line for line in checks if line] and all(line.endswith(" ok") for line in checks if line), checks
