"""A process's asyncio tasks, read out of its memory while it runs (`dump`, `profile --async`):
each pending task's name, the thread running it (if one is), its await chain (innermost
first, with file and line) and the tasks awaiting it.

Where the tasks are, by version (../shared/docs/asyncio-tasks.md has the measurements):
- 3.14+: per-thread linked lists of every C `_asyncio.Task`, found through the offsets the
  `_asyncio` module publishes in its `.AsyncioDebug` ELF section; who awaits a task is its
  `awaited_by` (one object, or a set).
- 3.9-3.13: `_asyncio._all_tasks` (3.9-3.11) or `_scheduled_tasks` and `_eager_tasks` (3.12,
  3.13), reached through sys.modules. Who awaits whom is rebuilt from what each task waits
  on: a task (its `_fut_waiter`), a gather's children (`_GatheringFuture._children`) or, for a
  TaskGroup's child, the group's `_parent_task` (the group's done callback on the child).
  Other ways of waiting (asyncio.wait, shield, as_completed) leave a task without a parent:
  it shows as a root.

The running task of a thread is the one whose coroutine's frame is on the thread's stack: its
chain is that stack down to the coroutine. A suspended coroutine's awaited object is on its
frame's value stack (what CPython's `_PyGen_yf` reads), per version.

The target runs on and is not trusted: every object is checked to be of the type expected,
every list, set and chain is bounded and guarded against loops, and a task whose state
changed while it was read (it finished, or its memory was reused) is dropped and counted.
Nothing here raises on what the target's memory holds."""

from __future__ import annotations

import functools
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import TraceError
from .events import INSTR_LASTI_BYTES, INSTR_LASTI_UNITS, OFFSET_NONE
from .interpreter import Interpreter, qualified
from .linetable import NO_LINE, LineTable
from .namespaces import by_host_tid
from .object_repr import LIST_ITEMS, SET_ENTRY, SET_MASK, SET_SLOTS_MAX, SET_TABLE
from .probes import NotAnElf, parsed_elf
from .pyobjects import word
from .sampling import WalkedBinary
from .target import host_path, read_maps
from .thread_names import ObjectReader, Read, interpreter_states, read_process, read_thread_states

TASKS_MAX = 100_000  # tasks read at most
CHAIN_MAX = 256  # links of one await chain
STACK_FRAMES_MAX = 1024  # frames of a thread's stack looked through for running tasks
CHILDREN_MAX = 10_000  # a gather's children, a list of callbacks
TYPE_BASES_MAX = 32  # tp_base links followed to tell a subclass
LINETABLE_MAX = 1 << 20

TP_BASE = 256  # PyTypeObject.tp_base (3.7 to 3.15)
LIST_SIZE = 16  # PyListObject.ob_size
WEAKREF_OBJECT = 16  # PyWeakReference.wr_object (None once its object is gone)
METHOD_SELF = 24  # PyMethodObject.im_self
FUNCTION_CODE = {(3, 9): 16}  # PyFunctionObject.func_code; 48 from 3.10 (after its COMMON_FIELDS)
RUN_CALLBACK = "_run_until_complete_cb"  # the done callback asyncio.run (run_until_complete) adds to its task
GEN_FRAME_OBJECT = 16  # 3.9, 3.10: PyGenObject.gi_frame (NULL once finished)
CODE_CODE = 48  # 3.9, 3.10: PyCodeObject.co_code, the bytecode (a bytes object)
YIELD_FROM = 72  # 3.9, 3.10
RESUME_OPCODES = {(3, 11): (151, 150), (3, 12): (151, 240)}  # RESUME, and RESUME_QUICK or INSTRUMENTED_RESUME
FUTURE_PENDING = 0  # fut_state


@dataclass(frozen=True)
class TaskLayout:
    """Where one version keeps a task's fields (TaskObj, FutureObj: byte offsets) and a
    coroutine's frame. Measured with ctypes in each version's processes, against its structs."""

    state: int  # fut_state, an int
    waiter: int  # task_fut_waiter
    coro: int  # task_coro
    name: int  # task_name
    gen_frame: int  # 3.11+: gi_iframe, the frame inside the coroutine; before, gi_frame, a pointer to it
    frame_state: int = OFFSET_NONE  # 3.11+: gi_frame_state, an int8
    suspended_in_await: int = 0  # 3.11+: the frame state of a coroutine suspended in await (-1; 3.15: 2)
    stack: int = OFFSET_NONE  # 3.11-3.13: stacktop (an int, in slots from localsplus); 3.14+: stackpointer
    localsplus: int = OFFSET_NONE
    awaited_slot: int = 1  # the awaited object is this many slots below the stack's top
    value_stack: int = OFFSET_NONE  # 3.9: f_stacktop (NULL unless suspended); 3.10: f_valuestack
    stack_depth: int = OFFSET_NONE  # 3.10: f_stackdepth, an int
    frame_generator: int = OFFSET_NONE  # 3.9, 3.10: PyFrameObject.f_gen
    callback0: int = 24  # fut_callback0
    callbacks: int = 40  # fut_callbacks: a list of (callback, context) tuples


_FUTURE_311 = dict(state=88, waiter=128, coro=136, name=144, gen_frame=80, frame_state=75, suspended_in_await=-1,
                   stack=64, localsplus=72)
LAYOUTS: dict[tuple[int, int], TaskLayout] = {
    (3, 9): TaskLayout(state=80, waiter=144, coro=152, name=160, gen_frame=GEN_FRAME_OBJECT, value_stack=72,
                       frame_generator=96),
    (3, 10): TaskLayout(state=88, waiter=152, coro=160, name=168, gen_frame=GEN_FRAME_OBJECT, value_stack=64,
                        stack_depth=80, frame_generator=88),
    (3, 11): TaskLayout(**_FUTURE_311),
    (3, 12): TaskLayout(**{**_FUTURE_311, "gen_frame": 72, "frame_state": 67}),
    (3, 13): TaskLayout(state=96, waiter=112, coro=120, name=128, gen_frame=72, frame_state=67, suspended_in_await=-1,
                        stack=64, localsplus=72),
    (3, 14): TaskLayout(state=104, waiter=120, coro=128, name=136, gen_frame=72, frame_state=67, suspended_in_await=-1,
                        stack=64),
    (3, 15): TaskLayout(state=104, waiter=120, coro=128, name=136, gen_frame=72, frame_state=67, suspended_in_await=2,
                        stack=64, awaited_slot=2),  # 3.15 renumbered the frame states; [-1] holds junk
}
LISTS_FIRST = (3, 14)  # tasks in per-thread lists, their offsets in .AsyncioDebug
ASYNCIO_DEBUG_SECTION = ".AsyncioDebug"
ASYNCIO_DEBUG_FIELDS = ("task_size", "task_name", "awaited_by", "is_task", "awaited_by_is_set", "task_coro",
                        "task_node", "interp_size", "interp_tasks_head", "tstate_size", "running_loop",
                        "running_task", "tstate_tasks_head")


def supported(version: tuple) -> bool:
    return version[:2] in LAYOUTS


def versions() -> str:
    first, last = min(LAYOUTS), max(LAYOUTS)
    return f"{first[0]}.{first[1]} to {last[0]}.{last[1]}"


@dataclass(frozen=True)
class TaskFrame:
    function: str
    file: str
    line: Optional[int]
    first_line: int = 0  # its code object's (profile --async labels frames by it); 0: unknown


@dataclass
class AsyncTask:
    address: int  # the task object's: its id
    name: str
    state: str  # "running" (on a thread's stack now) or "pending"
    coro: int  # its coroutine's address
    thread: Optional[int]  # the TID of the thread running it
    awaited_by: list[int] = field(default_factory=list)  # the tasks awaiting it
    frames: list[TaskFrame] = field(default_factory=list)  # its await chain, innermost first; [-1] its coroutine's
    parent_unknown: bool = False  # 3.9-3.13: waits in a way the parents are not rebuilt from (a root)


@dataclass
class TaskSnapshot:
    tasks: list[AsyncTask]
    notes: list[str] = field(default_factory=list)  # what could not be read
    seconds: float = 0.0
    imported: bool = True  # whether the process has imported asyncio (else it has no tasks)

    def by_address(self) -> dict[int, AsyncTask]:
        return {task.address: task for task in self.tasks}


@dataclass
class _Code:
    function: str
    file: str
    first_line: int
    lines: Optional[LineTable]

    def frame(self, offset: int) -> TaskFrame:
        if offset < 0 or self.lines is None:
            return TaskFrame(self.function, self.file, self.first_line if offset < 0 else None, self.first_line)
        line = self.lines.line(offset)
        return TaskFrame(self.function, self.file, None if line in (None, NO_LINE) else line, self.first_line)


UNREADABLE = TaskFrame("[unreadable coroutine]", "", None)


class TaskReader:
    """The asyncio tasks of one process (read: its memory; runtime: where its _PyRuntime is)."""

    def __init__(self, read: Read, interpreter: Interpreter, runtime: int, debug: Optional[dict[str, int]]):
        self._read = read
        self._version = interpreter.version[:2]
        self._frames = interpreter.layout
        self._layout = LAYOUTS[self._version]
        bias = runtime - interpreter.runtime
        self._types = {kind: address + bias for kind, address in interpreter.types.items()}
        self._objects = ObjectReader(read, interpreter.objects, self._types)
        self._code_type = interpreter.code_type + bias
        self._runtime = runtime
        self._debug = debug
        self._interpreter = interpreter
        self._codes: dict[int, Optional[_Code]] = {}
        self.notes: list[str] = []
        self._generator_types = {self._types.get("coroutine"), self._types.get("generator")} - {None}
        self._frame_size = self._frame_read()
        layout = self._layout
        self._task_size = max(layout.state, layout.waiter, layout.coro, layout.name, layout.callbacks) + 8
        self._task_data: dict[int, bytes] = {}
        self._instructions: dict[int, Optional[bytes]] = {}
        self._thread_states: Optional[dict[int, int]] = None
        self._bytecode: dict[int, int] = {}  # 3.9, 3.10: code object -> its co_code

    def _frame_read(self) -> int:
        """How much of a frame is read: up to the last field used here."""
        layout, frames = self._layout, self._frames
        ends = [frames.frame_read, layout.stack + 8, layout.value_stack + 8, layout.stack_depth + 4,
                layout.frame_generator + 8]
        return max(end for end in ends if end < OFFSET_NONE)

    # Objects

    def _type_of(self, address: int) -> int:
        return self._objects.pointer(address + self._objects.layout.ob_type) if address else 0

    def _is_subclass(self, cls: int, base: int) -> bool:
        for _ in range(TYPE_BASES_MAX):
            if not cls:
                return False
            if cls == base:
                return True
            cls = self._objects.pointer(cls + TP_BASE)
        return False

    def _set_keys(self, address: int) -> list[int]:
        """The keys of a set (an exact set), at most TASKS_MAX."""
        if not self._objects.is_a(address, "set"):
            return []
        head = self._read(address, SET_TABLE + 8)
        if head is None:
            return []
        mask = word(head, SET_MASK)
        if mask >= SET_SLOTS_MAX or (mask + 1) & mask:
            return []
        table = self._read(word(head, SET_TABLE), (mask + 1) * SET_ENTRY)
        if table is None:
            return []
        keys = [word(table, index * SET_ENTRY) for index in range(mask + 1)]
        return [key for key in keys if key][:TASKS_MAX]

    def _list_items(self, address: int) -> list[int]:
        if not self._objects.is_a(address, "list"):
            return []
        head = self._read(address, LIST_ITEMS + 8)
        size = word(head, LIST_SIZE, signed=True) if head is not None else 0
        if not 0 < size <= CHILDREN_MAX:
            return []
        items = self._read(word(head, LIST_ITEMS), 8 * size)
        return [word(items, 8 * index) for index in range(size)] if items is not None else []

    def _attribute(self, address: int, name: str) -> int:
        return self._objects.find(self._objects.attributes(address), name).get(name, 0)

    # Code objects and frames

    def _code(self, address: int) -> Optional[_Code]:
        if address not in self._codes:
            self._codes[address] = self._read_code(address)
        return self._codes[address]

    def _read_code(self, address: int) -> Optional[_Code]:
        frames = self._frames
        header = self._read(address, frames.code_read)
        if header is None or word(header, 8) != self._code_type:
            return None
        function = self._objects.text(word(header, frames.code_name))
        file = self._objects.text(word(header, frames.code_filename))
        first_line = int.from_bytes(header[frames.code_firstlineno : frames.code_firstlineno + 4], "little",
                                    signed=True)
        table = self._bytes(word(header, frames.code_linetable), LINETABLE_MAX)
        lines = LineTable(self._version, table, first_line) if table is not None else None
        return _Code(function if function is not None else "[unreadable name]", file or "", first_line, lines)

    def _bytes(self, address: int, limit: int) -> Optional[bytes]:
        layout = self._objects.layout
        if not self._objects.is_a(address, "bytes"):
            return None
        head = self._read(address, layout.bytes_data)
        size = word(head, layout.ob_size, signed=True) if head is not None else -1
        if not 0 <= size <= limit:
            return None
        return self._read(address + layout.bytes_data, size) if size else b""

    def _frame_at(self, frame: int, header: bytes) -> tuple[int, TaskFrame]:
        """(its code's address, the frame) of a frame whose first bytes are header."""
        frames = self._frames
        code = word(header, frames.frame_code) & ~frames.code_tag_mask
        known = self._code(code)
        if known is None:
            return code, UNREADABLE
        if frames.instruction_kind == INSTR_LASTI_BYTES:
            offset = int.from_bytes(header[frames.frame_instruction : frames.frame_instruction + 4], "little",
                                    signed=True)
        elif frames.instruction_kind == INSTR_LASTI_UNITS:
            offset = 2 * int.from_bytes(header[frames.frame_instruction : frames.frame_instruction + 4], "little",
                                        signed=True)
        else:
            offset = word(header, frames.frame_instruction) - (code + frames.code_instructions)
        return code, known.frame(offset)

    # A coroutine's chain

    def _coroutine(self, address: int) -> Optional[tuple[int, Optional[bytes], int]]:
        """(its frame, the frame's first bytes or None where unreadable, its frame state) of
        a coroutine or generator; None for another object, or one that has finished. From
        3.11 the frame is inside the object: one read takes both."""
        layout, ob_type = self._layout, self._objects.layout.ob_type
        if layout.frame_state == OFFSET_NONE:
            data = self._read(address, layout.gen_frame + 8)
            if data is None or word(data, ob_type) not in self._generator_types:
                return None
            frame = word(data, layout.gen_frame)
            return (frame, self._read(frame, self._frame_size), 0) if frame else None
        data = self._read(address, layout.gen_frame + self._frame_size)
        if data is None:
            data = self._read(address, ob_type + 8)  # an object smaller than a coroutine
            return None if data is None or word(data, ob_type) not in self._generator_types else (0, None, 0)
        if word(data, ob_type) not in self._generator_types:
            return None
        state = int.from_bytes(data[layout.frame_state : layout.frame_state + 1], "little", signed=True)
        if state > (4 if self._version >= (3, 15) else 0):  # past executing: finished
            return None
        return address + layout.gen_frame, data[layout.gen_frame :], state

    def _awaited(self, frame: int, header: bytes, state: int, code: int) -> int:
        """What a suspended coroutine awaits (its `_PyGen_yf`): 0 when it awaits nothing."""
        layout, version = self._layout, self._version
        if version <= (3, 10):
            return self._awaited_before_311(header, code)
        if state != layout.suspended_in_await:
            return 0
        if version in RESUME_OPCODES:  # 3.11, 3.12: suspended in await, if a RESUME with oparg >= 2 is next
            next_unit = self._instruction(word(header, self._frames.frame_instruction) + 2)
            if next_unit is None or next_unit[0] not in RESUME_OPCODES[version] or next_unit[1] < 2:
                return 0
        if layout.localsplus != OFFSET_NONE:  # stacktop counts slots from localsplus
            top = int.from_bytes(header[layout.stack : layout.stack + 4], "little", signed=True)
            if not 0 < top < 1 << 20:
                return 0
            slot = frame + layout.localsplus + 8 * (top - layout.awaited_slot)
        else:
            slot = word(header, layout.stack) - 8 * layout.awaited_slot
        return self._objects.pointer(slot) & ~self._frames.code_tag_mask

    def _awaited_before_311(self, header: bytes, code: int) -> int:
        layout, frames = self._layout, self._frames
        lasti = int.from_bytes(header[frames.frame_instruction : frames.frame_instruction + 4], "little", signed=True)
        if lasti < 0:
            return 0
        if self._version == (3, 9):
            top = word(header, layout.value_stack)
            opcode_at = lasti + 2
        else:
            depth = int.from_bytes(header[layout.stack_depth : layout.stack_depth + 4], "little", signed=True)
            top = word(header, layout.value_stack) + 8 * depth if 0 < depth < 1 << 20 else 0
            opcode_at = (lasti + 1) * 2
        if code not in self._bytecode:
            self._bytecode[code] = self._objects.pointer(code + CODE_CODE)
        bytecode = self._bytecode[code]
        unit = self._instruction(bytecode + self._objects.layout.bytes_data + opcode_at) if bytecode else None
        if not top or unit is None or unit[0] != YIELD_FROM:
            return 0
        return self._objects.pointer(top - 8)

    def _instruction(self, address: int) -> Optional[bytes]:
        """The code unit (opcode, argument) at an address of a code object's bytecode; read
        once a snapshot (thousands of coroutines are suspended at the same few)."""
        if address not in self._instructions:
            self._instructions[address] = self._read(address, 2)
        return self._instructions[address]

    def chain(self, coroutine: int) -> list[TaskFrame]:
        """A suspended coroutine's await chain, innermost first: through coroutines and
        generators, ending at what is neither (a future, an async generator's asend)."""
        outermost_first: list[TaskFrame] = []
        seen: set[int] = set()
        current = coroutine
        while current and current not in seen and len(outermost_first) < CHAIN_MAX:
            seen.add(current)
            found = self._coroutine(current)
            if found is None:
                break
            frame, header, state = found
            code, shown = self._frame_at(frame, header) if header is not None else (0, UNREADABLE)
            outermost_first.append(shown)
            if shown is UNREADABLE:
                break
            current = self._awaited(frame, header, state, code)
        return outermost_first[::-1]

    # Finding the tasks

    def _main_interpreter(self) -> int:
        """The main interpreter's state (the oldest: the list's last); 0 where unreadable.
        Subinterpreters' tasks are not read, as CPython's own tool does not read them."""
        return (interpreter_states(self._objects, self._runtime, self._frames) or [0])[-1]

    def has_asyncio(self) -> bool:
        return bool(self._asyncio_module())

    def _asyncio_module(self) -> int:
        main = self._main_interpreter()
        modules = self._objects.pointer(main + self._interpreter.interp_modules) if main else 0
        module = self._objects.find(self._objects.dict_entries(modules), "_asyncio").get("_asyncio", 0)
        return module if self._objects.is_a(module, "module") else 0

    def _module_globals(self, module: int, *names: str) -> dict[str, int]:
        entries = self._objects.dict_entries(self._objects.pointer(module + self._objects.layout.module_dict))
        return self._objects.find(entries, *names)

    def task_addresses(self) -> list[int]:
        """Where the target's tasks are: its lists' (3.14+) or its sets' (before); checked to
        be tasks as they are read."""
        if self._version >= LISTS_FIRST:
            return self._listed_tasks()
        module = self._asyncio_module()
        names = ("_all_tasks",) if self._version <= (3, 11) else ("_scheduled_tasks", "_eager_tasks")
        found = self._module_globals(module, *names) if module else {}
        addresses: list[int] = []
        for name in names:
            container = found.get(name, 0)
            if self._objects.is_a(container, "set"):  # _eager_tasks
                addresses += self._set_keys(container)
                continue
            data = self._attribute(container, "data") if container else 0  # a WeakSet's set of refs
            for ref in self._set_keys(data):
                head = self._read(ref, WEAKREF_OBJECT + 8)
                if head is not None and word(head, self._objects.layout.ob_type) == self._types.get("weakref"):
                    addresses.append(word(head, WEAKREF_OBJECT))
        return list(dict.fromkeys(addresses))[:TASKS_MAX]

    def _listed_tasks(self) -> list[int]:
        """3.14+: every thread's list, then the interpreter's (tasks of threads gone)."""
        debug = self._debug or {}
        heads = [state + debug["tstate_tasks_head"] for state in self.thread_states().values()]
        main = self._main_interpreter()
        if main:
            heads.append(main + debug["interp_tasks_head"])
        found: list[int] = []
        for head in heads:
            found += self._list_nodes(head, TASKS_MAX - len(found))
        return [node - debug["task_node"] for node in found]

    def _list_nodes(self, head: int, limit: int) -> list[int]:
        nodes, seen = [], {head}
        node = self._objects.pointer(head)
        while node and node not in seen and len(nodes) < limit:
            seen.add(node)
            nodes.append(node)
            node = self._objects.pointer(node)
        if node != head and len(nodes) < limit:
            self.notes.append("a task list did not lead back to its head (it changed while read, or is damaged): "
                              "its tasks after that point are missing")
        return nodes

    def thread_states(self) -> dict[int, int]:
        """TID -> thread state of every thread, read once."""
        if self._thread_states is None:
            self._thread_states = read_thread_states(self._read, self._interpreter, self._runtime)
        return self._thread_states

    def running(self) -> dict[int, tuple[int, list[TaskFrame]]]:
        """Coroutine address -> (TID, its stack down to the coroutine's frame) for every
        generator frame on a thread's stack."""
        frames, layout = self._frames, self._layout
        found: dict[int, tuple[int, list[TaskFrame]]] = {}
        for tid, state in self.thread_states().items():
            frame = self._objects.pointer(state + frames.tstate_frame)
            if frame and frames.cframe_current_frame != OFFSET_NONE:
                frame = self._objects.pointer(frame + frames.cframe_current_frame)
            stack: list[TaskFrame] = []
            seen: set[int] = set()
            while frame and frame not in seen and len(seen) < STACK_FRAMES_MAX:
                seen.add(frame)
                header = self._read(frame, self._frame_size)
                if header is None:
                    break
                owner = header[frames.frame_owner] if frames.frame_owner != OFFSET_NONE else 0
                if owner < frames.owner_skipped:
                    stack.append(self._frame_at(frame, header)[1])
                    if layout.frame_generator != OFFSET_NONE:
                        generator = word(header, layout.frame_generator)
                    else:
                        generator = frame - layout.gen_frame if owner == frames.owner_generator else 0
                    if generator:
                        found.setdefault(generator, (tid, list(stack)))
                frame = word(header, frames.frame_previous)
        return found

    def _task(self, address: int, running: dict[int, tuple[int, list[TaskFrame]]], task_type: int) -> Optional[AsyncTask]:
        """A pending task (None: no task, or done), read whole once: what linking needs is kept."""
        layout = self._layout
        data = self._read(address, self._task_size)
        if (data is None or not self._is_subclass(word(data, self._objects.layout.ob_type), task_type)
                or int.from_bytes(data[layout.state : layout.state + 4], "little") != FUTURE_PENDING):
            return None
        self._task_data[address] = data
        coro, name = word(data, layout.coro) & ~3, self._task_name(word(data, layout.name) & ~3)
        if coro in running:
            tid, stack = running[coro]
            return AsyncTask(address, name, "running", coro, tid, frames=stack)
        return AsyncTask(address, name, "pending", coro, None, frames=self.chain(coro))

    def _task_name(self, name: int) -> str:
        """A str; an int (3.12+, until get_name() is called) is Task-N, as CPython names it."""
        text = self._objects.text(name)
        if text is not None:
            return text
        number = self._objects.integer(name)
        return f"Task-{number}" if number is not None else "[unreadable name]"

    def _still(self, task: AsyncTask) -> bool:
        """Whether the task is pending still, with the coroutine it had (else it finished, or
        its memory was reused, while it was read)."""
        layout = self._layout
        data = self._read(task.address, max(layout.coro, layout.state) + 8)
        return (data is not None and int.from_bytes(data[layout.state : layout.state + 4], "little") == FUTURE_PENDING
                and word(data, layout.coro) & ~3 == task.coro)

    # Who awaits whom

    def parents_from_awaited_by(self, task: AsyncTask, known: dict[int, AsyncTask]) -> list[int]:
        """3.14+: the tasks in a task's awaited_by (one object, or a set of them)."""
        debug = self._debug or {}
        awaited_by = self._objects.pointer(task.address + debug["awaited_by"]) & ~3
        flag = self._read(task.address + debug["awaited_by_is_set"], 1)
        if not awaited_by or flag is None:
            return []
        candidates = self._set_keys(awaited_by) if flag == b"\x01" else [awaited_by]
        return [candidate & ~3 for candidate in candidates if candidate & ~3 in known]

    def link_before_314(self, tasks: dict[int, AsyncTask], future_type: int) -> None:
        """3.9-3.13: parents rebuilt from what each task waits on, and from TaskGroups'
        callbacks on their children."""
        layout = self._layout
        for task in tasks.values():
            waiter = word(self._task_data[task.address], layout.waiter)
            if waiter in tasks:  # awaits a task
                _add_parent(tasks[waiter], task.address)
            elif waiter and (kind := self._type_of(waiter)) != future_type and self._is_subclass(kind, future_type):
                for child in self._list_items(self._attribute(waiter, "_children")):  # a gather
                    if child in tasks:
                        _add_parent(tasks[child], task.address)
        for task in tasks.values():
            unexplained = False
            for callback in self._callbacks(task.address):
                if self._type_of(callback) == self._types.get("method"):
                    group = self._objects.pointer(callback + METHOD_SELF)
                    parent = self._attribute(group, "_parent_task") if group else 0
                    if parent in tasks:  # a TaskGroup's child
                        _add_parent(task, parent)
                        continue
                unexplained = unexplained or self._function_name(callback) != RUN_CALLBACK
            # Something else waits for it (asyncio.wait, shield, a callback of the program's):
            # whether a task is behind that cannot be read.
            task.parent_unknown = unexplained and not task.awaited_by

    def _function_name(self, callback: int) -> Optional[str]:
        if self._type_of(callback) != self._types.get("function"):
            return None
        code = self._code(self._objects.pointer(callback + FUNCTION_CODE.get(self._version, 48)))
        return code.function if code is not None else None

    def _callbacks(self, task: int) -> list[int]:
        layout, data = self._layout, self._task_data[task]
        first = word(data, layout.callback0)
        found = [first] if first else []
        tuple_items = self._objects.layout.tuple_items
        for item in self._list_items(word(data, layout.callbacks)):
            if self._objects.is_a(item, "tuple"):
                found.append(self._objects.pointer(item + tuple_items))
        return found

    def read(self) -> TaskSnapshot:
        module = self._asyncio_module()
        types = self._module_globals(module, "Task", "Future") if module else {}
        if "Task" not in types:
            if not module:
                return TaskSnapshot([], imported=False)
            return TaskSnapshot([], ["its _asyncio module has no Task type: no tasks read"])
        running = self.running()
        tasks: dict[int, AsyncTask] = {}
        for address in self.task_addresses():
            task = self._task(address, running, types["Task"])
            if task is not None:
                tasks[address] = task
        _trim_nested(tasks.values())
        if self._version >= LISTS_FIRST:
            for task in tasks.values():
                task.awaited_by = self.parents_from_awaited_by(task, tasks)
        else:
            self.link_before_314(tasks, types.get("Future", 0))
        kept = [task for task in tasks.values() if self._still(task)]
        dropped = len(tasks) - len(kept)
        if dropped:
            self.notes.append(f"{dropped} task{'s' if dropped != 1 else ''} finished while being read: left out")
        alive = {task.address for task in kept}
        for task in kept:
            task.awaited_by = [parent for parent in task.awaited_by if parent in alive]
        return TaskSnapshot(kept, self.notes)


def _trim_nested(tasks) -> None:
    """A running task's chain ends where the task it runs inside begins (an eager task starts
    inside the task that created it, on the same stack): each keeps only its own frames."""
    by_thread: dict[int, list[AsyncTask]] = {}
    for task in tasks:
        if task.thread is not None:
            by_thread.setdefault(task.thread, []).append(task)
    for running in by_thread.values():
        running.sort(key=lambda task: len(task.frames))
        lengths = [len(task.frames) for task in running]
        for outer, inner_length in zip(running[1:], lengths):
            outer.frames = outer.frames[inner_length:]


def _add_parent(task: AsyncTask, parent: int) -> None:
    if parent not in task.awaited_by and parent != task.address:
        task.awaited_by.append(parent)


def _asyncio_debug(pid: int, walked: WalkedBinary) -> Optional[dict[str, int]]:
    """3.14+: the offsets in the .AsyncioDebug section of the file that holds _asyncio (the
    interpreter's binary where it is built in, else its extension module, mapped once
    imported); None where no mapped file has it."""
    candidates = []
    for mapping in read_maps(pid):
        name = os.path.basename(mapping.path)
        if mapping.offset == 0 and (mapping.path == walked.binary.shown_path or name.startswith("_asyncio.")):
            candidates.append(mapping)
    for mapping in sorted(candidates, key=lambda mapping: mapping.path != walked.binary.shown_path):
        path = host_path(pid, mapping)
        try:
            found = os.stat(path)
            if not stat.S_ISREG(found.st_mode):
                continue
            values = _debug_offsets(path, (found.st_dev, found.st_ino, found.st_mtime_ns))
        except (OSError, NotAnElf):
            continue
        if values is not None:
            return values
    return None


@functools.lru_cache(maxsize=16)
def _debug_offsets(path: str, identity: tuple) -> Optional[dict[str, int]]:
    """The offsets a file's .AsyncioDebug section holds, read once per file (identity: its
    device, inode and mtime; profile --async reads the tasks every second)."""
    data = parsed_elf(path, _section_data)
    if data is None or len(data) < 8 * len(ASYNCIO_DEBUG_FIELDS):
        return None
    values = {name: word(data, 8 * index) for index, name in enumerate(ASYNCIO_DEBUG_FIELDS)}
    return values if _plausible(values) else None


def _section_data(elf, stream) -> Optional[bytes]:
    section = elf.get_section_by_name(ASYNCIO_DEBUG_SECTION)
    if section is None or section["sh_type"] == "SHT_NOBITS" or section["sh_size"] > 4096:
        return None
    return section.data()


def _plausible(values: dict[str, int]) -> bool:
    """Offsets inside the structs whose sizes the section gives (a damaged file's are not used)."""
    within = {"task_size": ("task_name", "awaited_by", "task_coro", "task_node", "is_task", "awaited_by_is_set"),
              "interp_size": ("interp_tasks_head",),
              "tstate_size": ("running_loop", "running_task", "tstate_tasks_head")}
    return all(0 < values[size] < 1 << 20 and all(values[name] < values[size] for name in names)
               for size, names in within.items())


def read_tasks(pid: int, walked: WalkedBinary, qualnames: bool = False) -> Optional[TaskSnapshot]:
    """The asyncio tasks of pid now; None where its version is not one read here."""
    interpreter = qualified(walked.interpreter) if qualnames else walked.interpreter
    if not supported(interpreter.version):
        return None
    debug = None
    if interpreter.version[:2] >= LISTS_FIRST:
        try:
            debug = _asyncio_debug(pid, walked)
        except (TraceError, OSError):  # gone, or its maps unreadable: read_process says so
            debug = None

    def reading(read: Read, interpreter_: Interpreter, runtime: int) -> dict:
        reader = TaskReader(read, interpreter, runtime, debug)
        if interpreter.version[:2] >= LISTS_FIRST and debug is None:
            return {"snapshot": TaskSnapshot([], imported=reader.has_asyncio())}
        return {"snapshot": reader.read()}

    start = time.monotonic()
    found = read_process(pid, walked, reading)
    snapshot = found.get("snapshot") if found else None
    if snapshot is None:
        return TaskSnapshot([], ["the process's memory could not be read"])
    hosts = by_host_tid(pid, {task.thread: task.thread for task in snapshot.tasks if task.thread is not None})
    inner_to_host = {inner: host for host, inner in hosts.items()}
    for task in snapshot.tasks:
        if task.thread is not None:
            task.thread = inner_to_host.get(task.thread, task.thread)
    snapshot.seconds = time.monotonic() - start
    return snapshot
