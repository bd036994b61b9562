"""Where a CPython keeps its threads and frames, for the kernel's frame walker (bpf/pystacks.h),
and its modules and objects, for reading thread names (thread_names.py): read out of the
binary's `_Py_DebugOffsets` on 3.13+, from tables before.

From 3.13, `_PyRuntime` starts with `_Py_DebugOffsets`: a cookie, the version, whether the build
is free-threaded, then groups of offsets. Its own layout changes with every minor version, so
the positions of the offsets used here are kept per version. A few things the walker needs are
in no debug offsets (`_co_firsttraceable`, the frame owners, the stack reference's tag): they
are in the table too. Every number was checked against the real binaries: Debian's 3.9, 3.11,
3.13, 3.14 and 3.15 and pyenv's 3.7 to 3.13 (compiled `offsetof` and live processes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields, replace
from typing import Optional

from .errors import Unsupported
from .events import (
    GENERATOR_EMBEDDED, GENERATOR_NONE, GENERATOR_POINTER, INSTR_LASTI_BYTES, INSTR_LASTI_UNITS, INSTR_POINTER,
    OFFSET_NONE, OWNER_NONE,
)
from .probes import NotAnElf, defined_symbols, file_offset, load_segments, parsed_elf
from .pyobjects import FREE_THREADED_SYMBOL, Layout, layout_for
from .versions import STACKS_FIRST, STACKS_LAST, Version, format_version, stacks_readable

RUNTIME_SYMBOL = "_PyRuntime"
CODE_TYPE_SYMBOL = "PyCode_Type"
DEBUG_COOKIE = b"xdebugpy"
# STACKS_FIRST: 3.6 has no _PyRuntime, its interpreters hang from a static variable.
# glibc's struct pthread keeps the thread's TID here on x86-64 (2.26 to 2.43 at least); 3.7 to
# 3.10 name their threads only by pthread_self(), so the walker reads the TID there.
GLIBC_PTHREAD_TID = 720
# In no debug offsets: co_flags (3.11 on) and co_framesize (3.12 on), by offsetof against each
# version's headers (pyenv's 3.11 to 3.13, Debian's 3.13 to 3.15).
CODE_FLAGS_311 = 48
CODE_FRAMESIZE_312 = 76
# The types of the objects reading thread names and asyncio tasks walks through and `dump
# --locals` shows, checked by address; and the singletons None, True and False, by kind.
OBJECT_TYPE_SYMBOLS = {"dict": "PyDict_Type", "module": "PyModule_Type", "str": "PyUnicode_Type",
                       "int": "PyLong_Type", "bytes": "PyBytes_Type", "float": "PyFloat_Type", "tuple": "PyTuple_Type",
                       "list": "PyList_Type", "set": "PySet_Type", "frozenset": "PyFrozenSet_Type",
                       "bool": "PyBool_Type", "cell": "PyCell_Type", "coroutine": "PyCoro_Type",
                       "generator": "PyGen_Type", "method": "PyMethod_Type", "function": "PyFunction_Type",
                       "weakref": "_PyWeakref_RefType", "None": "_Py_NoneStruct",
                       "True": "_Py_TrueStruct", "False": "_Py_FalseStruct"}
# Where PyInterpreterState keeps sys.modules (3.12: imports.modules) before 3.13 publishes it:
# offsetof and DWARF of pyenv's 3.7.16 to 3.12.1, offsetof of Debian's 3.9.2 and 3.11.2.
INTERP_MODULES = {(3, 7): 40, (3, 8): 56, (3, 9): 856, (3, 10): 856, (3, 11): 888, (3, 12): 944}


# The generator owning a frame (--async), checked in live processes against id(generator):
# PyFrameObject.f_gen (3.7-3.10), and the generator's embedded frame, gi_iframe (3.11+).
FRAME_GEN = {(3, 7): 96, (3, 8): 96, (3, 9): 96, (3, 10): 88}
GI_IFRAME_311 = 80
GI_IFRAME_312 = 72  # 3.12 to 3.15 (3.14+ publish it too: _Py_DebugOffsets.gen_object)

# co_qualname (3.11+): right after co_name, at 128, in every version read (3.11 to 3.15, by
# offsetof and in live processes).
CODE_QUALNAME_311 = 128


@dataclass(frozen=True)
class FrameLayout:
    """struct py_layout in bpf/events.h: byte offsets, OFFSET_NONE where a version has no such
    field. The read sizes are derived (see `with_read_sizes`)."""

    runtime_interpreters: int
    interp_next: int
    interp_threads: int
    tstate_next: int
    tstate_thread_id: int
    tstate_native_thread_id: int
    tstate_frame: int
    cframe_current_frame: int
    frame_previous: int
    frame_code: int
    frame_instruction: int
    frame_owner: int
    code_filename: int
    code_name: int
    code_firstlineno: int
    code_linetable: int
    code_instructions: int
    code_firsttraceable: int
    code_flags: int
    str_length: int
    str_state: int
    str_ascii_data: int
    str_compact_data: int
    bytes_size: int
    bytes_data: int
    instruction_kind: int
    runtime_gil: int = OFFSET_NONE
    interp_gil: int = OFFSET_NONE
    owner_skipped: int = OWNER_NONE
    owner_generator: int = OWNER_NONE
    code_tag_mask: int = 0
    pthread_tid: int = OFFSET_NONE
    code_framesize: int = OFFSET_NONE  # 3.12+: a frame's size in pointers (3.13's __init__ shim)
    generator_kind: int = GENERATOR_NONE  # how a frame tells its generator (--async)
    frame_generator: int = OFFSET_NONE  # f_gen in the frame (3.7-3.10), gi_iframe in the generator (3.11+)
    tstate_read: int = 0
    frame_read: int = 0
    code_read: int = 0

    def with_read_sizes(self) -> "FrameLayout":
        """How much of a thread state, a frame and a code object the kernel reads: up to the
        last field it uses."""

        def end(*offsets: int) -> int:
            return max(offset for offset in offsets if offset != OFFSET_NONE) + 8

        return replace(
            self,
            tstate_read=end(self.tstate_next, self.tstate_thread_id, self.tstate_native_thread_id, self.tstate_frame),
            frame_read=end(self.frame_previous, self.frame_code, self.frame_instruction, self.frame_owner,
                           self.frame_generator if self.generator_kind == GENERATOR_POINTER else OFFSET_NONE),
            code_read=end(8, self.code_filename, self.code_name, self.code_firstlineno, self.code_linetable,
                          self.code_firsttraceable, self.code_flags),
        )

    def values(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _strings(version: Version) -> dict[str, int]:
    """Where str and bytes keep their fields (pyobjects' table, shared with audit)."""
    objects = layout_for(version)
    return dict(str_length=objects.str_length, str_state=objects.str_state, str_ascii_data=objects.ascii_data,
                str_compact_data=objects.compact_data, bytes_size=objects.ob_size, bytes_data=objects.bytes_data)


def _frame_object(version: Version, **offsets: int) -> FrameLayout:
    """3.7-3.10: PyFrameObject, found from the thread state, counting instructions in f_lasti."""
    return FrameLayout(
        interp_next=0, interp_threads=8, tstate_next=8, tstate_thread_id=176, tstate_native_thread_id=OFFSET_NONE,
        tstate_frame=24, cframe_current_frame=OFFSET_NONE, frame_previous=24, frame_code=32, frame_owner=OFFSET_NONE,
        code_instructions=OFFSET_NONE, code_firsttraceable=OFFSET_NONE, pthread_tid=GLIBC_PTHREAD_TID,
        code_flags=32 if version[:2] == (3, 7) else 36, generator_kind=GENERATOR_POINTER,
        frame_generator=FRAME_GEN[version[:2]], **_strings(version), **offsets,
    )


def _interpreter_frame(version: Version, **offsets: int) -> FrameLayout:
    """3.11-3.12: _PyInterpreterFrame, through the thread's _PyCFrame."""
    return FrameLayout(
        interp_next=0, tstate_next=8, code_filename=112, code_name=120, code_linetable=136,
        frame_instruction=56, instruction_kind=INSTR_POINTER, owner_generator=1, code_flags=48,
        generator_kind=GENERATOR_EMBEDDED, frame_generator=GI_IFRAME_311 if version[:2] == (3, 11) else GI_IFRAME_312,
        **_strings(version), **offsets,
    )


TABLE: dict[tuple[int, int], FrameLayout] = {
    (3, 7): _frame_object((3, 7), runtime_interpreters=24, frame_instruction=104, code_filename=96, code_name=104,
                          code_firstlineno=36, code_linetable=112, instruction_kind=INSTR_LASTI_BYTES,
                          runtime_gil=1264),
    (3, 8): _frame_object((3, 8), runtime_interpreters=32, frame_instruction=104, code_filename=104, code_name=112,
                          code_firstlineno=40, code_linetable=120, instruction_kind=INSTR_LASTI_BYTES,
                          runtime_gil=1152),
    (3, 9): _frame_object((3, 9), runtime_interpreters=32, frame_instruction=104, code_filename=104, code_name=112,
                          code_firstlineno=40, code_linetable=120, instruction_kind=INSTR_LASTI_BYTES,
                          runtime_gil=352),
    (3, 10): _frame_object((3, 10), runtime_interpreters=32, frame_instruction=96, code_filename=104, code_name=112,
                           code_firstlineno=40, code_linetable=120, instruction_kind=INSTR_LASTI_UNITS,
                           runtime_gil=352),
    (3, 11): _interpreter_frame(
        (3, 11), runtime_interpreters=40, interp_threads=16, tstate_thread_id=152, tstate_native_thread_id=160,
        tstate_frame=56, cframe_current_frame=8, frame_previous=48, frame_code=32, frame_owner=69,
        code_firstlineno=72, code_instructions=184, code_firsttraceable=168, runtime_gil=360),
    (3, 12): _interpreter_frame(
        (3, 12), runtime_interpreters=40, interp_threads=72, tstate_thread_id=136, tstate_native_thread_id=144,
        tstate_frame=56, cframe_current_frame=0, frame_previous=8, frame_code=0, frame_owner=70,
        code_firstlineno=68, code_instructions=192, code_firsttraceable=176, interp_gil=384, code_framesize=76,
        owner_skipped=3),  # FRAME_OWNED_BY_CSTACK: the <shim> frame C calls leave
}


@dataclass(frozen=True)
class DebugOffsets:
    """Where one version's _Py_DebugOffsets keeps the offsets the walker takes, and what it
    lacks."""

    positions: dict[str, int]  # FrameLayout field -> byte position of its value
    code_firsttraceable: int
    str_compact_data: Optional[int]  # None: in the debug offsets
    code_tag_mask: int  # 3.14+: f_executable is a _PyStackRef, tagged in its low bits
    modules: int  # byte position of interpreter_state.imports_modules
    objects: dict[str, int]  # pyobjects.Layout field -> byte position of its value


def _positions(base: dict[str, int], **moved: int) -> dict[str, int]:
    return {**base, **moved}


_DEBUG_313 = {
    "runtime_interpreters": 40, "interp_next": 64, "interp_threads": 72, "tstate_next": 168,
    "tstate_frame": 184, "tstate_thread_id": 192, "tstate_native_thread_id": 200, "frame_previous": 232,
    "frame_code": 240, "frame_instruction": 248, "frame_owner": 264, "code_filename": 280, "code_name": 288,
    "code_linetable": 304, "code_firstlineno": 312, "code_instructions": 344, "bytes_size": 520,
    "bytes_data": 528, "str_state": 544, "str_length": 552, "str_ascii_data": 560, "interp_gil": 112,
}
_DEBUG_314 = _positions(
    _DEBUG_313, interp_gil=120, tstate_next=192, tstate_frame=208, tstate_thread_id=216, tstate_native_thread_id=224,
    frame_previous=256, frame_code=264, frame_instruction=272, frame_owner=288, code_filename=320, code_name=328,
    code_linetable=344, code_firstlineno=352, code_instructions=384, bytes_size=600, bytes_data=608,
    str_state=624, str_length=632, str_ascii_data=640,
)
_DEBUG_315 = _positions(
    _DEBUG_314, tstate_thread_id=240, tstate_native_thread_id=248, frame_previous=320, frame_code=328,
    frame_instruction=336, frame_owner=352, code_filename=384, code_name=392, code_linetable=408,
    code_firstlineno=416, code_instructions=448, bytes_size=696, bytes_data=704, str_state=720, str_length=728,
    str_ascii_data=736, str_compact_data=744,
)
# What reading thread names takes (the str fields come with the frame layout's): dict_object,
# type_object, long_object; 3.15 adds tp_basicsize, tp_dictoffset and heap_type_object.
_OBJECTS_313 = {"dict_keys": 456, "dict_values": 464, "tp_flags": 392, "int_value": 496, "int_digits": 504}
_OBJECTS_314 = {"dict_keys": 536, "dict_values": 544, "tp_flags": 440, "int_value": 576, "int_digits": 584}
_OBJECTS_315 = {"dict_keys": 632, "dict_values": 640, "tp_flags": 504, "tp_basicsize": 512, "tp_dictoffset": 520,
                "cached_keys": 536, "int_value": 672, "int_digits": 680}
DEBUG_OFFSETS: dict[tuple[int, int], DebugOffsets] = {
    (3, 13): DebugOffsets(_DEBUG_313, code_firsttraceable=184, str_compact_data=56, code_tag_mask=0, modules=88,
                          objects=_OBJECTS_313),
    (3, 14): DebugOffsets(_DEBUG_314, code_firsttraceable=192, str_compact_data=56, code_tag_mask=3, modules=96,
                          objects=_OBJECTS_314),
    (3, 15): DebugOffsets(_DEBUG_315, code_firsttraceable=192, str_compact_data=None, code_tag_mask=3, modules=96,
                          objects=_OBJECTS_315),
}
_DEBUG_HEAD = struct.Struct("<8sQQ")  # cookie, version (PY_VERSION_HEX), free_threaded


def _published(data: bytes, positions: dict[str, int]) -> dict[str, int]:
    return {name: struct.unpack_from("<Q", data, position)[0] for name, position in positions.items()}


def layout_from_debug_offsets(data: bytes, version: Version) -> FrameLayout:
    """The layout a 3.13+ binary publishes at the start of _PyRuntime (data: its bytes)."""
    known = DEBUG_OFFSETS[version[:2]]
    values = _published(data, known.positions)
    if known.str_compact_data is not None:
        values["str_compact_data"] = known.str_compact_data
    return FrameLayout(
        **values, cframe_current_frame=OFFSET_NONE, code_firsttraceable=known.code_firsttraceable,
        code_flags=CODE_FLAGS_311, code_framesize=CODE_FRAMESIZE_312,
        instruction_kind=INSTR_POINTER, code_tag_mask=known.code_tag_mask,
        owner_skipped=3,  # 3.13 FRAME_OWNED_BY_CSTACK, 3.14+ FRAME_OWNED_BY_INTERPRETER (and CSTACK, 4)
        owner_generator=1, generator_kind=GENERATOR_EMBEDDED, frame_generator=GI_IFRAME_312,
    )


def objects_from_debug_offsets(data: bytes, version: Version, layout: FrameLayout) -> tuple[Layout, int]:
    """The object layout of a 3.13+ binary (the table's, with what it publishes in its place),
    and where its interpreters keep sys.modules."""
    known = DEBUG_OFFSETS[version[:2]]
    objects = replace(
        layout_for(version), **_published(data, known.objects), str_length=layout.str_length,
        str_state=layout.str_state, ascii_data=layout.str_ascii_data, compact_data=layout.str_compact_data,
    )
    return objects, _published(data, {"modules": known.modules})["modules"]


@dataclass(frozen=True)
class Interpreter:
    """A CPython binary whose stacks the kernel can walk: its layout and the link-time
    addresses of _PyRuntime and PyCode_Type (moved by the load bias in each process); and what
    reading its objects takes: their layout, where an interpreter keeps sys.modules, and the
    link-time addresses of the types in OBJECT_TYPE_SYMBOLS that it exports (by kind)."""

    version: Version
    layout: FrameLayout
    runtime: int
    code_type: int
    objects: Layout
    interp_modules: int
    types: dict[str, int]


def qualified(interpreter: Interpreter) -> Interpreter:
    """The interpreter with functions named by co_qualname (`Class.method`) where its version
    has one (3.11+); as it is before."""
    layout = interpreter.layout
    if interpreter.version[:2] < (3, 11) or layout.code_name + 8 != CODE_QUALNAME_311:
        return interpreter
    return replace(interpreter, layout=replace(layout, code_name=CODE_QUALNAME_311).with_read_sizes())


def read_interpreter(path: str, shown_path: str, version: Optional[Version]) -> Interpreter:
    """The interpreter in the ELF file at path, or Unsupported saying why its stacks cannot be
    read (version unknown or out of range, free-threaded build, symbols missing)."""
    what = f"{format_version(version)} at {shown_path}"
    if version is None:
        raise Unsupported(f"the CPython version of {shown_path} could not be read, so neither can its stacks")
    if not stacks_readable(version):
        raise Unsupported(
            f"{what}: pybpftrace reads the stacks of CPython {STACKS_FIRST[0]}.{STACKS_FIRST[1]} to "
            f"{STACKS_LAST[0]}.{STACKS_LAST[1]}"
        )
    try:
        return parsed_elf(path, lambda elf, stream: _interpreter_in(elf, stream, version, what))
    except NotAnElf as error:
        raise Unsupported(f"{shown_path} is not a readable ELF file: {error}") from None


def _interpreter_in(elf, stream, version: Version, what: str) -> Interpreter:
    """read_interpreter's reading of the file."""
    symbols = defined_symbols(
        elf, (RUNTIME_SYMBOL, CODE_TYPE_SYMBOL, FREE_THREADED_SYMBOL, *OBJECT_TYPE_SYMBOLS.values()))
    if FREE_THREADED_SYMBOL in symbols:
        raise Unsupported(f"{what} is a free-threaded build, whose stacks pybpftrace does not read")
    missing = [name for name in (RUNTIME_SYMBOL, CODE_TYPE_SYMBOL) if name not in symbols]
    if missing:
        raise Unsupported(f"{what} does not export {' and '.join(missing)}, which reading its stacks needs")
    if version[:2] in TABLE:
        layout = TABLE[version[:2]]
        objects, interp_modules = layout_for(version), INTERP_MODULES[version[:2]]
    else:
        stream.seek(file_offset(symbols[RUNTIME_SYMBOL], load_segments(elf)))
        data = stream.read(1024)
        cookie, hexversion, free_threaded = _DEBUG_HEAD.unpack_from(data)
        if cookie != DEBUG_COOKIE or hexversion >> 16 != (version[0] << 8 | version[1]):
            raise Unsupported(f"{what}: _PyRuntime does not start with this version's _Py_DebugOffsets")
        if free_threaded:
            raise Unsupported(f"{what} is a free-threaded build, whose stacks pybpftrace does not read")
        layout = layout_from_debug_offsets(data, version)
        objects, interp_modules = objects_from_debug_offsets(data, version, layout)
    types = {kind: symbols[name] for kind, name in OBJECT_TYPE_SYMBOLS.items() if name in symbols}
    return Interpreter(version, layout.with_read_sizes(), symbols[RUNTIME_SYMBOL], symbols[CODE_TYPE_SYMBOL],
                       objects, interp_modules, types)
