"""Each frame's arguments and local variables, read out of a process's memory for `dump
--locals`: the frame chain of each thread followed from its thread state, each frame's fast
locals (its `localsplus`) named by its code object, each value shown as repr() would
(object_repr.py). Cells (a variable an inner function captured) show what they hold; a
variable not bound yet is left out, as py-spy leaves it.

This runs after the stacks were read, while the process runs on: a thread whose chain is not
the one its stack showed (it ran on meanwhile) gets no locals, and says so, rather than
another moment's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .events import OFFSET_NONE
from .interpreter import Interpreter, qualified
from .object_repr import Reprs
from .pyobjects import Layout, word
from .namespaces import by_host_tid
from .thread_names import ObjectReader, read_process, read_thread_states

Read = Callable[[int, int], Optional[bytes]]

CO_VARARGS, CO_VARKEYWORDS = 0x4, 0x8
CO_FAST_HIDDEN, CO_FAST_CELL, CO_FAST_FREE = 0x10, 0x40, 0x80  # co_localspluskinds (3.11+)
NAMES_MAX = 4096  # variables of one frame
FRAMES_MAX = 1024  # the frames a dump shows


@dataclass(frozen=True)
class LocalsLayout:
    """Where one version keeps a frame's fast locals and their names: byte offsets from the
    frame (PyFrameObject up to 3.10, _PyInterpreterFrame from 3.11) and its code object.
    Measured in each version's live processes (Debian's 3.9, 3.11, 3.13 to 3.15, pyenv's 3.8
    to 3.13) against their headers."""

    localsplus: int
    argcount: int
    kwonlyargcount: int
    names: int  # co_varnames (to 3.10), co_localsplusnames (3.11+)
    count: int  # co_nlocals (to 3.10), co_nlocalsplus (3.11+)
    kinds: int = OFFSET_NONE  # co_localspluskinds (3.11+)
    cellvars: int = OFFSET_NONE  # to 3.10: the cells after the locals, then the free variables
    freevars: int = OFFSET_NONE


_FRAME_OBJECT = dict(argcount=16, kwonlyargcount=24, count=28, names=72, freevars=80, cellvars=88)
_CODE_312 = dict(argcount=52, kwonlyargcount=60, count=72, names=96, kinds=104)
LAYOUTS = {
    (3, 8): LocalsLayout(localsplus=360, **_FRAME_OBJECT),
    (3, 9): LocalsLayout(localsplus=360, **_FRAME_OBJECT),
    (3, 10): LocalsLayout(localsplus=352, **_FRAME_OBJECT),
    (3, 11): LocalsLayout(localsplus=72, argcount=56, kwonlyargcount=64, count=76, names=96, kinds=104),
    (3, 12): LocalsLayout(localsplus=72, **_CODE_312),
    (3, 13): LocalsLayout(localsplus=72, **_CODE_312),
    (3, 14): LocalsLayout(localsplus=80, **_CODE_312),
    (3, 15): LocalsLayout(localsplus=80, **_CODE_312),
}


@dataclass(frozen=True)
class Variable:
    name: str
    argument: bool
    repr: str


@dataclass(frozen=True)
class FrameLocals:
    function: str
    file: str
    variables: list[Variable]


def _int32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little", signed=True)


class LocalsReader:
    """The locals of one process's frames."""

    def __init__(self, read: Read, interpreter: Interpreter, runtime: int):
        self._read = read
        self._frames = interpreter.layout
        self._layout = LAYOUTS[interpreter.version[:2]]
        objects: Layout = interpreter.objects
        bias = runtime - interpreter.runtime
        types = {kind: address + bias for kind, address in interpreter.types.items()}
        self._objects = ObjectReader(read, objects, types)
        self.reprs = Reprs(read, objects, types, self._objects.dict_entries)
        self._tag_mask = self._frames.code_tag_mask
        self._code_type = interpreter.code_type + bias

    def thread_frames(self, tstate: int) -> Optional[list[FrameLocals]]:
        """The locals of each Python frame of a thread, innermost first; None where its chain
        cannot be read."""
        frames = self._frames
        data = self._read(tstate + frames.tstate_frame, 8)
        if data is None:
            return None
        frame = word(data, 0)
        if frame and frames.cframe_current_frame != OFFSET_NONE:
            data = self._read(frame + frames.cframe_current_frame, 8)
            frame = word(data, 0) if data is not None else 0
        found: list[FrameLocals] = []
        seen = set()
        while frame and len(found) < FRAMES_MAX and frame not in seen:
            seen.add(frame)
            header = self._read(frame, frames.frame_read)
            if header is None:
                return None
            code = word(header, frames.frame_code) & ~self._tag_mask
            skipped = frames.frame_owner != OFFSET_NONE and header[frames.frame_owner] >= frames.owner_skipped
            if not skipped and self._objects.pointer(code + self._objects.layout.ob_type) == self._code_type:
                found.append(self._frame_locals(frame, code))
            frame = word(header, frames.frame_previous)
        return found

    def _frame_locals(self, frame: int, code: int) -> FrameLocals:
        layout, frames = self._layout, self._frames
        header = self._read(code, max(layout.names, layout.kinds if layout.kinds != OFFSET_NONE else 0,
                                      layout.cellvars if layout.cellvars != OFFSET_NONE else 0,
                                      frames.code_filename, frames.code_name) + 8)
        if header is None:
            return FrameLocals("", "", [])
        function = self._objects.text(word(header, frames.code_name)) or ""
        file = self._objects.text(word(header, frames.code_filename)) or ""
        flags = _int32(header, frames.code_flags)
        arguments = (_int32(header, layout.argcount) + _int32(header, layout.kwonlyargcount)
                     + bool(flags & CO_VARARGS) + bool(flags & CO_VARKEYWORDS))
        names = self._names(word(header, layout.names))
        count = min(_int32(header, layout.count), NAMES_MAX)
        if layout.kinds != OFFSET_NONE:
            kinds = self._kinds(word(header, layout.kinds), count)
            slots = self._slots(frame, count)
            variables = [self._variable(names[i], i < arguments, slots[i], kinds[i])
                         for i in range(min(count, len(names), len(kinds), len(slots)))]
        else:
            variables = self._frame_object_locals(frame, header, names, count, arguments)
        return FrameLocals(function, file, [variable for variable in variables if variable is not None])

    def _frame_object_locals(self, frame: int, header: bytes, names: list[str], count: int,
                             arguments: int) -> list[Optional[Variable]]:
        """Up to 3.10: co_nlocals slots named by co_varnames, then cells (co_cellvars) and free
        variables (co_freevars); an argument an inner function captured is in its cell (its
        own slot empty)."""
        layout = self._layout
        cells = self._names(word(header, layout.cellvars)) + self._names(word(header, layout.freevars))
        slots = self._slots(frame, count + len(cells))
        variables: list[Optional[Variable]] = [
            self._variable(names[i], i < arguments, slots[i], 0) for i in range(min(count, len(names), len(slots)))]
        for index, name in enumerate(cells):
            cell = slots[count + index] if count + index < len(slots) else 0
            contents = self.reprs.cell_contents(cell) if cell else None
            if not contents:
                continue
            variable = Variable(name, False, self.reprs.repr(contents))
            if name in names[:count]:
                position = names.index(name)
                variables[position] = Variable(name, position < arguments, variable.repr)
            else:
                variables.append(variable)
        return variables

    def _variable(self, name: str, argument: bool, value: int, kind: int) -> Optional[Variable]:
        if not value or kind & CO_FAST_HIDDEN:
            return None  # not bound yet; or a comprehension's, inlined (3.12+)
        if kind & (CO_FAST_CELL | CO_FAST_FREE):
            contents = self.reprs.cell_contents(value)
            if contents is not None:  # else a cell variable its frame has not made a cell yet
                if not contents:
                    return None
                value = contents
        return Variable(name, argument, self.reprs.repr(value))

    def _slots(self, frame: int, count: int) -> list[int]:
        data = self._read(frame + self._layout.localsplus, 8 * count) if count > 0 else b""
        return [word(data, 8 * i) & ~self._tag_mask for i in range(count)] if data is not None else []

    def _names(self, address: int) -> list[str]:
        """The names a tuple of str holds (at most NAMES_MAX); [] if it is none."""
        if not address or not self._objects.is_a(address, "tuple"):
            return []
        layout = self._objects.layout
        header = self._read(address, layout.ob_size + 8)
        count = min(word(header, layout.ob_size, signed=True), NAMES_MAX) if header is not None else 0
        data = self._read(address + layout.tuple_items, 8 * count) if count > 0 else b""
        if data is None:
            return []
        return [self._objects.text(word(data, 8 * i)) or "?" for i in range(count)]

    def _kinds(self, address: int, count: int) -> bytes:
        if not self._objects.is_a(address, "bytes"):
            return b""
        return self._read(address + self._objects.layout.bytes_data, count) or b""


def locals_versions() -> str:
    first, last = min(LAYOUTS), max(LAYOUTS)
    return f"{first[0]}.{first[1]} to {last[0]}.{last[1]}"


def process_locals(pid: int, walked, qualnames: bool = False) -> Optional[dict[int, Optional[list[FrameLocals]]]]:
    """Host TID -> the locals of each Python frame of that thread of pid, innermost first (None
    for a thread whose frames could not be read); None where the version's are not known."""
    if walked.interpreter.version[:2] not in LAYOUTS:
        return None

    def reading(read: Read, interpreter: Interpreter, runtime: int) -> dict[int, Optional[list[FrameLocals]]]:
        reader = LocalsReader(read, qualified(interpreter) if qualnames else interpreter, runtime)
        return {tid: reader.thread_frames(state) for tid, state in read_thread_states(read, interpreter, runtime).items()}

    return by_host_tid(pid, read_process(pid, walked, reading))
