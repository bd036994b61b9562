"""Python's own names for a process's threads (`threading.Thread.name`), read out of its memory
while it runs.

Where they are: each interpreter's `sys.modules["threading"]` holds `_active`, a dict from each
thread's ident (pthread_self(), the frame walker's thread_id) to its Thread object, whose name
is its `_name` attribute. Threads started by `_thread.start_new_thread` are not there: they
have no Python name. The object layouts are pyobjects' table, with what 3.13+ binaries publish
in their `_Py_DebugOffsets` in its place (interpreter.py).

The target runs on while its objects are read one at a time (pread on /proc/PID/mem), so any
read may find it changed: every object is checked to be of the type expected before it is
used, every count is bounded, a Thread is believed only if its own `_ident` is the key it was
found under, and a name only if the Thread still holds it once its text is read. Whatever does
not fit leaves a thread (or all of them) without a name: nothing here raises, and no thread is
ever given another's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from .interpreter import FrameLayout, Interpreter
from .pyobjects import Attributes, Layout, Truncated, decode_int, decode_str, int_size, str_shape, word
from .errors import TraceError
from .events import OFFSET_NONE
from .namespaces import by_host_tid
from .sampling import WalkedBinary, load_bias, process_interpreter
from .target import thread_name as os_thread_name

THREADS_MAX = 4096
# Thread states read to fill the kernel's cache of them (bpf/pystacks.h's walk looks at 4096)
THREAD_STATES_MAX = 65536
INTERPRETERS_MAX = 64  # each subinterpreter has a threading module of its own
ENTRIES_MAX = 1 << 16  # entries of a dict read at most (sys.modules of a big program: a few thousand)
NAME_CHARS_MAX = 256  # a longer name is cut there, ending with CUT
CUT = "…"
IDENT_DIGITS_MAX = 3  # 30-bit digits of a pthread_t (64 bits)

# tp_flags bits (object.h, the same in 3.7 to 3.15 where they exist)
INLINE_VALUES = 1 << 2  # 3.13+
MANAGED_DICT = 1 << 4  # 3.11+
HEAPTYPE = 1 << 9
# PyDictKeysObject.dk_kind (3.11+): general entries hold a hash, a key and a value; unicode and
# split ones only a key and a value, the values of split ones elsewhere. Before 3.11, all general.
KEYS_GENERAL, KEYS_UNICODE, KEYS_SPLIT = 0, 1, 2
GENERAL_ENTRY = 24  # PyDictKeyEntry: me_hash, me_key, me_value
UNICODE_ENTRY = 16  # PyDictUnicodeEntry: me_key, me_value

Read = Callable[[int, int], Optional[bytes]]  # (address, size) -> exactly that many bytes, or None
Entries = list[tuple[int, int]]  # a dict's (key, value) object addresses


class ProcessMemory:
    """A process's memory: all the bytes asked for, or None."""

    def __init__(self, pid: int):
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self, address: int, size: int) -> Optional[bytes]:
        if address <= 0 or size < 0:
            return None
        try:
            data = os.pread(self._fd, size, address)
        except (OSError, OverflowError):  # unmapped, or beyond what an offset holds
            return None
        return data if len(data) == size else None

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True)
class KeysShape:
    """Where a PyDictKeysObject keeps its entries, and their shape."""

    entries: int  # offset of the first entry from the keys object
    count: int  # dk_nentries: entries in use or deleted
    entry_size: int
    key: int  # offset of the key in an entry; the value follows it


def _index_bytes(size: int) -> int:
    """The width of a hash table index (DK_IXSIZE): signed, wide enough for -size."""
    return 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8


def keys_shape(layout: Layout, header: bytes, split: bool) -> Optional[KeysShape]:
    """The entries of a keys object from its header (up to dk_indices); None where the header
    is not one that fits (split: whether its values are elsewhere)."""
    if layout.keys_log2:
        log2_size, log2_index_bytes = header[layout.keys_size], header[layout.keys_index_bytes]
        kind = header[layout.keys_kind]
        if log2_size > 30 or log2_index_bytes != log2_size + _index_bytes(1 << log2_size).bit_length() - 1:
            return None
        if kind not in (KEYS_GENERAL, KEYS_UNICODE, KEYS_SPLIT) or (kind == KEYS_SPLIT) != split:
            return None
        size, indices = 1 << log2_size, 1 << log2_index_bytes
        entry_size, key = (GENERAL_ENTRY, 8) if kind == KEYS_GENERAL else (UNICODE_ENTRY, 0)
    else:
        size = word(header, layout.keys_size)
        if size < 8 or size > 1 << 30 or size & (size - 1):
            return None
        indices, entry_size, key = size * _index_bytes(size), GENERAL_ENTRY, 8
    count = word(header, layout.keys_nentries, signed=True)
    if not 0 <= count <= min(size * 2 // 3, ENTRIES_MAX):  # USABLE_FRACTION
        return None
    return KeysShape(layout.keys_indices + indices, count, entry_size, key)


class ObjectReader:
    """A process's objects, read and checked against the types they must have (types: kind
    -> run-time address of its type object)."""

    def __init__(self, read: Read, layout: Layout, types: dict[str, int]):
        self._read = read
        self.layout = layout
        self._types = types

    def pointer(self, address: int) -> int:
        """The pointer at address; 0 where it cannot be read."""
        data = self._read(address, 8)
        return word(data, 0) if data is not None else 0

    def is_a(self, address: int, kind: str) -> bool:
        """Whether the object at address is exactly of that type (not a subclass)."""
        return kind in self._types and self.pointer(address + self.layout.ob_type) == self._types[kind]

    def text(self, address: int) -> Optional[str]:
        """A str's text, cut at NAME_CHARS_MAX characters."""
        layout = self.layout
        header = self._read(address, layout.str_state + 1)
        if header is None or word(header, layout.ob_type) != self._types.get("str"):
            return None
        shape = str_shape(layout, header)
        if shape is None:
            return None
        length, kind, start = shape
        data = self._read(address, start + min(length, NAME_CHARS_MAX) * kind)
        value = decode_str(layout, data) if data is not None else None
        return value.start + CUT if isinstance(value, Truncated) else value

    def integer(self, address: int) -> Optional[int]:
        """An int's value, if it has at most IDENT_DIGITS_MAX digits."""
        layout = self.layout
        header = self._read(address, layout.int_digits)
        if header is None or word(header, layout.ob_type) != self._types.get("int"):
            return None
        digits, _ = int_size(layout, header)
        data = self._read(address, layout.int_digits + 4 * digits) if digits <= IDENT_DIGITS_MAX else None
        value = decode_int(layout, data) if data is not None else None
        return value if isinstance(value, int) else None

    def dict_entries(self, address: int) -> Entries:
        """A dict's entries; none where it is not a dict, or cannot be read whole."""
        layout = self.layout
        head = self._read(address, layout.dict_values + 8) if self.is_a(address, "dict") else None
        if head is None:
            return []
        return self.table_entries(word(head, layout.dict_keys), word(head, layout.dict_values))

    def table_entries(self, keys: int, values: int) -> Entries:
        """The entries of a keys object, their values in the entries or, for split keys, in the
        PyDictValues at `values`."""
        layout = self.layout
        header = self._read(keys, layout.keys_indices)
        shape = keys_shape(layout, header, split=bool(values)) if header is not None else None
        if shape is None:
            return []
        count = shape.count
        if values and layout.values_start:  # 3.13+: a values array may hold fewer than the keys
            values_header = self._read(values, layout.values_start)
            count = min(count, values_header[0]) if values_header is not None else 0  # capacity
        entries = self._read(keys + shape.entries, count * shape.entry_size)
        stored = self._read(values + layout.values_start, count * 8) if values else entries
        if entries is None or stored is None:
            return []
        found = []
        for index in range(count):
            key = word(entries, index * shape.entry_size + shape.key)
            value = word(stored, 8 * index if values else index * shape.entry_size + shape.key + 8)
            if key and value:  # else deleted, or an attribute this object does not have
                found.append((key, value))
        return found

    def find(self, entries: Entries, *keys: str) -> dict[str, int]:
        """The values of those (ASCII) str keys among a dict's entries."""
        layout, lengths, found = self.layout, {len(key) for key in keys}, {}
        for key, value in entries:
            header = self._read(key, layout.str_state + 1)
            if header is None or word(header, layout.ob_type) != self._types.get("str"):
                continue
            length, kind, start = str_shape(layout, header) or (-1, 0, 0)
            if kind != 1 or length not in lengths:
                continue  # not a key wanted (those are ASCII): its characters are not read
            data = self._read(key, start + length)
            text = decode_str(layout, data) if data is not None else None
            if text in keys:
                found[text] = value
        return found

    def attributes(self, address: int) -> Entries:
        """The instance attributes of an object whose class has no __slots__: in a dict, or
        (3.11+) as values whose keys its class keeps."""
        layout = self.layout
        cls = self.pointer(address + layout.ob_type)
        header = self._read(cls, layout.tp_dictoffset + 8)
        if header is None:
            return []
        flags = word(header, layout.tp_flags)
        if layout.attributes is Attributes.DICT_AT_OFFSET or not flags & MANAGED_DICT:
            offset = word(header, layout.tp_dictoffset, signed=True)  # negative: from the end, never a Thread
            return self.dict_entries(self.pointer(address + offset)) if offset > 0 else []
        if layout.attributes is Attributes.VALUES_OR_DICT:
            values = self.pointer(address + layout.managed_values)
            if values:
                return self._shared_values(cls, flags, values)
            return self.dict_entries(self.pointer(address + layout.managed_dict))
        if layout.attributes is Attributes.TAGGED_VALUES_OR_DICT:
            tagged = self.pointer(address + layout.managed_dict)
            if tagged & 1:
                return self._shared_values(cls, flags, tagged + 1)
            return self.dict_entries(tagged)
        materialized = self.pointer(address + layout.managed_dict)
        if materialized:
            return self.dict_entries(materialized)
        if not flags & INLINE_VALUES:
            return []
        values = address + word(header, layout.tp_basicsize, signed=True)
        valid = self._read(values + layout.values_valid, 1)
        return self._shared_values(cls, flags, values) if valid == b"\x01" else []

    def _shared_values(self, cls: int, flags: int, values: int) -> Entries:
        """Attributes kept as values, their keys in the class's ht_cached_keys."""
        if not flags & HEAPTYPE:
            return []
        keys = self.pointer(cls + self.layout.cached_keys)
        return self.table_entries(keys, values) if keys else []


def thread_names_in(reader: ObjectReader, modules: int) -> dict[int, str]:
    """ident -> name of the threads one interpreter's threading module knows (modules: its
    sys.modules)."""
    threading = reader.find(reader.dict_entries(modules), "threading").get("threading", 0)
    if not reader.is_a(threading, "module"):
        return {}
    globals_ = reader.dict_entries(reader.pointer(threading + reader.layout.module_dict))
    active = reader.find(globals_, "_active").get("_active", 0)
    names = {}
    for key, thread in reader.dict_entries(active)[:THREADS_MAX]:
        ident = reader.integer(key)
        name = _name_of(reader, thread, ident) if ident is not None else None
        if name is not None:
            names[ident] = name
    return names


def _name_of(reader: ObjectReader, thread: int, ident: int) -> Optional[str]:
    """A Thread's name, if its own _ident is `ident` (else the entry was read torn, from a
    table being resized or freed). Its _name is read again after its text: a name replaced
    meanwhile (its str perhaps freed and reused) is not taken."""
    attributes = reader.find(reader.attributes(thread), "_ident", "_name")
    if "_name" not in attributes or reader.integer(attributes.get("_ident", 0)) != ident:
        return None
    name = reader.text(attributes["_name"])
    still = reader.find(reader.attributes(thread), "_name").get("_name")
    return name if still == attributes["_name"] else None


def interpreter_states(reader: ObjectReader, runtime: int, frames: FrameLayout) -> list[int]:
    """The interpreters, the newest first (the main one is last)."""
    found, interpreter = [], reader.pointer(runtime + frames.runtime_interpreters)
    while interpreter and len(found) < INTERPRETERS_MAX:
        found.append(interpreter)
        interpreter = reader.pointer(interpreter + frames.interp_next)
    return found


def read_thread_names(read: Read, interpreter: Interpreter, runtime: int) -> dict[int, str]:
    """pthread ident -> Thread.name of the threads a process's threading modules know (runtime:
    where its _PyRuntime is); where two interpreters name a thread, the older one's name."""
    bias = runtime - interpreter.runtime
    types = {kind: address + bias for kind, address in interpreter.types.items()}
    reader = ObjectReader(read, interpreter.objects, types)
    names: dict[int, str] = {}
    for address in reversed(interpreter_states(reader, runtime, interpreter.layout)):
        modules = reader.pointer(address + interpreter.interp_modules)
        for ident, name in thread_names_in(reader, modules).items():
            if len(names) < THREADS_MAX:
                names.setdefault(ident, name)
    return names


def _thread_states(read: Read, interpreter: Interpreter, runtime: int, limit: int) -> Iterator[tuple[int, int, int]]:
    """(state's address, pthread ident, TID) of each thread state of a process's interpreters,
    at most limit of each interpreter's: the TID the state's own (3.11+), or the one in glibc's
    struct pthread its ident points at (as the walker reads it); 0 where unreadable."""
    frames = interpreter.layout
    reader = ObjectReader(read, interpreter.objects, {})
    for address in interpreter_states(reader, runtime, frames):
        state = reader.pointer(address + frames.interp_threads)
        for _ in range(limit):
            if not state:
                break
            ident = reader.pointer(state + frames.tstate_thread_id)
            if frames.tstate_native_thread_id != OFFSET_NONE:
                data = read(state + frames.tstate_native_thread_id, 4)
            else:
                data = read(ident + frames.pthread_tid, 4) if ident else None
            tid = int.from_bytes(data, "little", signed=True) if data is not None else 0
            yield state, ident, max(tid, 0)
            state = reader.pointer(state + frames.tstate_next)


def read_thread_ids(read: Read, interpreter: Interpreter, runtime: int) -> dict[int, int]:
    """pthread ident -> TID of every thread state of a process's interpreters."""
    return {ident: tid for _, ident, tid in _thread_states(read, interpreter, runtime, THREADS_MAX) if ident and tid}


def read_thread_states(read: Read, interpreter: Interpreter, runtime: int) -> dict[int, int]:
    """TID -> the address of its thread state, of every thread of a process's interpreters
    (at most THREAD_STATES_MAX each)."""
    return {tid: state for state, _, tid in _thread_states(read, interpreter, runtime, THREAD_STATES_MAX) if tid}


def read_process(pid: int, walked: WalkedBinary, reading: Callable[[Read, Interpreter, int], dict]) -> dict:
    """What reading(read, interpreter, runtime) finds in pid's memory: {} if it cannot be read
    (the process gone, say)."""
    try:
        bias = load_bias(pid, walked)
        if bias is None:  # the interpreter not mapped
            return {}
        memory = ProcessMemory(pid)
    except (OSError, TraceError):  # gone, or its map unreadable
        return {}
    try:
        return reading(memory.read, walked.interpreter, walked.interpreter.runtime + bias)
    finally:
        memory.close()


def thread_states_by_tid(pid: int, walked: WalkedBinary) -> dict[int, int]:
    """TID -> thread state address of pid's threads: {} if they cannot be read."""
    return by_host_tid(pid, read_process(pid, walked, read_thread_states))


def python_thread_names(pid: int, walked: WalkedBinary) -> dict[int, str]:
    """pthread ident -> Thread.name of pid's threads, as far as they can be read: {} if none
    (the process gone, say)."""
    return read_process(pid, walked, read_thread_names)


def python_names_by_tid(pid: int, walked: WalkedBinary) -> dict[int, str]:
    """TID -> Thread.name of pid's running threads that threading knows, for the tools whose
    events carry TIDs and no idents (the probes'): a thread gone since is left out (its TID
    may be another's by now)."""
    def reading(read: Read, interpreter: Interpreter, runtime: int) -> dict[int, str]:
        names = read_thread_names(read, interpreter, runtime)
        return {tid: names[ident] for ident, tid in read_thread_ids(read, interpreter, runtime).items()
                if ident in names}

    return {tid: name for tid, name in by_host_tid(pid, read_process(pid, walked, reading)).items()
            if os.path.exists(f"/proc/{pid}/task/{tid}")}


class ThreadLabels:
    """A trace's names for its threads: once tracing has stopped, Python's (Thread.name) for the
    threads still running that threading knows; else the OS name, read when tracing began or
    when first asked. registered: the interpreter of a process the walker reads, if it does."""

    def __init__(self, registered: Callable[[int], Optional[WalkedBinary]] = lambda pid: None):
        self._registered = registered
        self._os_names: dict[tuple[int, int], str] = {}  # by (pid, tid): a TID comes back, another process's
        self._python_names: dict[int, dict[int, str]] = {}  # pid -> TID -> Thread.name, read once stopped
        self.stopped = False

    def note(self, pid: int) -> None:
        """Read the OS names of pid's threads now (before it is told tracing runs: a short-lived
        target may be gone by the end)."""
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return  # gone already
        for tid in tids:
            self.os_name(pid, int(tid))

    def name(self, pid: int, tid: int) -> str:
        if self.stopped:
            names = self._python_names.get(pid)
            if names is None:
                names = self._python_names[pid] = self._read_python_names(pid)
            if tid in names:
                return names[tid]
        return self.os_name(pid, tid)

    def os_name(self, pid: int, tid: int) -> str:
        """A thread's OS name (comm): read when tracing began or when first asked, "" if it was
        gone."""
        name = self._os_names.get((pid, tid))
        if name is None:
            name = os_thread_name(pid, tid)
            if name:
                self._os_names[(pid, tid)] = name
        return name

    def _read_python_names(self, pid: int) -> dict[int, str]:
        """TID -> Thread.name of a process's threads, read out of its memory (after tracing,
        which it must not slow down): {} where they cannot be."""
        walked = self._registered(pid)
        if walked is None:
            try:
                walked = process_interpreter(pid)
            except (TraceError, OSError):  # gone, or an interpreter whose layout is not known
                return {}
        return python_names_by_tid(pid, walked)
