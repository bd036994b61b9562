"""Reading Python's thread names out of a process's memory (pybpftrace/thread_names.py), from
objects built as bytes in each version's layout: dicts of every keys family (3.7-3.10's dk_size,
3.11+'s general, unicode and split keys), instance attributes in each version's place, str and
int decoding, and what is refused rather than guessed. The real interpreters are read in
tests/e2e/test_dump.py."""

import struct
import pytest

from objects import (
    Image, synthetic_dict, synthetic_int, synthetic_keys, synthetic_str, synthetic_type, synthetic_values,
)
from pybpftrace.interpreter import TABLE, Interpreter
from pybpftrace.pyobjects import layout_for
from pybpftrace.thread_names import (
    CUT, ENTRIES_MAX, HEAPTYPE, INLINE_VALUES, KEYS_GENERAL, KEYS_SPLIT, KEYS_UNICODE, MANAGED_DICT, NAME_CHARS_MAX,
    THREADS_MAX, ObjectReader, keys_shape, read_thread_ids, read_thread_names, thread_names_in,
)

TYPES = {"dict": 0x900000, "module": 0x900400, "str": 0x900800, "int": 0x900C00}
BYTES_TYPE = 0x901000
VERSIONS = [(3, 7), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14), (3, 15)]
IDENT = 0x7F12_3456_76C0  # a pthread_t: two 30-bit digits


def ids(version):
    return f"{version[0]}.{version[1]}"


class Objects:
    """Objects of one version placed in an Image, and a reader of them."""

    def __init__(self, version):
        self.version = version
        self.layout = layout_for(version)
        self.image = Image()
        self.reader = ObjectReader(self.image.read, self.layout, TYPES)

    def str(self, text: str) -> int:
        return self.image.place(synthetic_str(self.version, text, TYPES["str"]))

    def int(self, value: int, type_address: int = TYPES["int"]) -> int:
        return self.image.place(synthetic_int(self.layout, value, type_address))

    def keys(self, entries, kind=KEYS_UNICODE, deleted=0) -> int:
        return self.image.place(synthetic_keys(self.layout, entries, kind, deleted))

    def dict(self, entries, kind=KEYS_UNICODE, deleted=0) -> int:
        """A combined dict: of str keys (unicode keys, 3.11+) unless told."""
        return self.image.place(synthetic_dict(self.layout, TYPES["dict"], self.keys(entries, kind, deleted)))

    def split_dict(self, keys: int, values: list[int]) -> int:
        stored = self.image.place(synthetic_values(self.layout, values))
        return self.image.place(synthetic_dict(self.layout, TYPES["dict"], keys, stored))

    def module(self, globals_: int, type_address: int = TYPES["module"]) -> int:
        return self.image.place(struct.pack("<qQQ", 1, type_address, globals_))


# Dicts: the entries of every keys family


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_a_combined_dict_of_str_keys(version):
    objects = Objects(version)
    entries = [(objects.str(name), objects.int(number)) for number, name in enumerate(["sys", "threading", "os"])]
    address = objects.dict(entries, deleted=2)
    assert objects.reader.dict_entries(address) == entries
    assert objects.reader.find(entries, "threading", "os") == {"threading": entries[1][1], "os": entries[2][1]}


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_a_dict_of_int_keys(version):
    """threading._active: general keys (3.11+), the hash kept in each entry."""
    objects = Objects(version)
    entries = [(objects.int(IDENT + 0x100000 * number), objects.str(f"thread {number}")) for number in range(3)]
    assert objects.reader.dict_entries(objects.dict(entries, kind=KEYS_GENERAL)) == entries
    assert [objects.reader.integer(key) for key, _ in entries] == [IDENT, IDENT + 0x100000, IDENT + 0x200000]


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_a_split_dict_takes_its_values_apart_from_its_keys(version):
    objects = Objects(version)
    names = [objects.str(name) for name in ("_name", "_ident", "_daemonic")]
    keys = objects.keys([(name, 0) for name in names], kind=KEYS_SPLIT)
    values = [objects.str("worker"), 0, objects.int(IDENT)]  # no _ident in this object
    found = objects.reader.dict_entries(objects.split_dict(keys, values))
    assert found == [(names[0], values[0]), (names[2], values[2])]


@pytest.mark.parametrize("version", [(3, 9), (3, 11)], ids=ids)
def test_big_tables_have_wider_indices(version):
    """300 entries: a table of 512, its indices 2 bytes wide (256 and more)."""
    objects = Objects(version)
    entries = [(objects.str(f"key{number}"), objects.int(number)) for number in range(300)]
    header = synthetic_keys(objects.layout, entries)[: objects.layout.keys_indices]
    shape = keys_shape(objects.layout, header, split=False)
    assert (shape.entries, shape.count) == (objects.layout.keys_indices + 512 * 2, 300)
    found = objects.reader.dict_entries(objects.dict(entries))
    assert found == entries and objects.reader.find(found, "key299") == {"key299": entries[299][1]}


def test_keys_that_do_not_fit_are_refused():
    modern, old = layout_for((3, 11)), layout_for((3, 9))
    good = synthetic_keys(modern, [(1, 2)])[:32]
    assert keys_shape(modern, good, split=False) is not None
    assert keys_shape(modern, good, split=True) is None  # values elsewhere, but not split keys
    for position, value in ((9, 5), (10, 7), (8, 31)):  # index width against size, unknown kind, too big
        bad = bytearray(good)
        bad[position] = value
        assert keys_shape(modern, bytes(bad), split=False) is None, position
    more_than_usable = bytearray(good)
    struct.pack_into("<q", more_than_usable, 24, 6)  # 8 slots hold 5 entries
    assert keys_shape(modern, bytes(more_than_usable), split=False) is None
    negative = bytearray(good)
    struct.pack_into("<q", negative, 24, -1)
    assert keys_shape(modern, bytes(negative), split=False) is None
    not_a_power = bytearray(synthetic_keys(old, [(1, 2)])[:40])
    struct.pack_into("<q", not_a_power, 8, 12)
    assert keys_shape(old, bytes(not_a_power), split=False) is None
    huge = bytearray(synthetic_keys(old, [(1, 2)])[:40])
    struct.pack_into("<qqQqq", huge, 0, 1, 1 << 20, 0, 0, ENTRIES_MAX + 1)
    assert keys_shape(old, bytes(huge), split=False) is None


def test_313_values_hold_no_more_than_their_capacity():
    """Keys shared by a class may have grown past an older object's values (3.13+)."""
    objects = Objects((3, 13))
    names = [objects.str(name) for name in ("_name", "_ident", "_extra")]
    keys = objects.keys([(name, 0) for name in names], kind=KEYS_SPLIT)
    values = [objects.str("worker"), objects.int(IDENT), objects.str("beyond")]
    stored = objects.image.place(synthetic_values(objects.layout, values, capacity=2))
    assert objects.reader.table_entries(keys, stored) == list(zip(names[:2], values[:2]))


def test_what_is_not_a_dict_has_no_entries():
    objects = Objects((3, 11))
    entries = [(objects.str("a"), objects.int(1))]
    keys = objects.keys(entries)
    not_a_dict = objects.image.place(synthetic_dict(objects.layout, TYPES["module"], keys))
    assert objects.reader.dict_entries(not_a_dict) == []
    assert objects.reader.dict_entries(0) == [] and objects.reader.dict_entries(0x1234) == []
    cut = Image()
    dict_address = cut.place(synthetic_dict(objects.layout, TYPES["dict"], 0x7E0000000000))  # keys unmapped
    assert ObjectReader(cut.read, objects.layout, TYPES).dict_entries(dict_address) == []


# str and int


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_names_of_every_kind(version):
    objects = Objects(version)
    for text in ("", "worker-1", "caf\xe9", "worker-\u03b1", "snake-\U0001f40d"):
        assert objects.reader.text(objects.str(text)) == text
    assert objects.reader.text(objects.str("x" * 300)) == "x" * NAME_CHARS_MAX + CUT
    assert objects.reader.text(objects.str("\u03b1" * 300)) == "\u03b1" * NAME_CHARS_MAX + CUT
    assert objects.reader.text(objects.int(7)) is None


def test_a_legacy_str_is_not_read():
    objects = Objects((3, 11))
    legacy = bytearray(synthetic_str((3, 11), "worker", TYPES["str"]))
    legacy[32] &= ~(1 << 5)  # not compact: its characters elsewhere
    assert objects.reader.text(objects.image.place(bytes(legacy))) is None


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_idents_are_read_exactly(version):
    objects = Objects(version)
    for value in (0, 1, 2**30, IDENT, 2**64 - 1):
        assert objects.reader.integer(objects.int(value)) == value
    assert objects.reader.integer(objects.int(2**90)) is None  # four digits: no pthread_t
    assert objects.reader.integer(objects.int(IDENT, type_address=BYTES_TYPE)) is None
    assert objects.reader.integer(objects.str("140")) is None


def test_an_int_cut_short_is_not_read():
    objects = Objects((3, 12))
    whole = synthetic_int(objects.layout, IDENT, TYPES["int"])
    assert objects.reader.integer(objects.image.place(whole[:-4])) is None


# Instance attributes, where each version keeps them


def thread_attributes(objects: Objects, name: str, ident: int) -> tuple[list[int], list[int]]:
    keys = [objects.str(key) for key in ("_target", "_name", "_ident")]
    return keys, [objects.str("idle"), objects.str(name), objects.int(ident)]


def assert_attributes(objects: Objects, address: int, values):
    assert objects.reader.find(objects.reader.attributes(address), "_name", "_ident") == {
        "_name": values[1], "_ident": values[2]}


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_attributes_in_a_dict(version):
    """3.7-3.10: a __dict__ at the type's tp_dictoffset; 3.11+: the managed dict before the
    object (made from its values, or of its own)."""
    objects = Objects(version)
    keys, values = thread_attributes(objects, "worker", IDENT)
    attributes = objects.dict(list(zip(keys, values)))
    layout = objects.layout
    if version < (3, 11):
        cls = objects.image.place(synthetic_type(layout, HEAPTYPE, basicsize=32, dictoffset=16))
        address = objects.image.place(struct.pack("<qQQQ", 1, cls, attributes, 0))
    else:
        cls = objects.image.place(synthetic_type(layout, HEAPTYPE | MANAGED_DICT, dictoffset=-1))
        before = struct.pack("<QQQQ", 0, attributes, 0, 0)  # values (3.11) or weakrefs, the dict, the GC header
        address = objects.image.place(struct.pack("<qQ", 1, cls), before=before)
    assert_attributes(objects, address, values)


@pytest.mark.parametrize("version", [(3, 11), (3, 12)], ids=ids)
def test_attributes_as_values_before_the_object(version):
    """3.11: a pointer to the values at -32; 3.12: at -24, tagged: values - 1."""
    objects = Objects(version)
    keys, values = thread_attributes(objects, "worker", IDENT)
    cached = objects.keys([(key, 0) for key in keys], kind=KEYS_SPLIT)
    stored = objects.image.place(synthetic_values(objects.layout, values))
    flags = HEAPTYPE | MANAGED_DICT
    cls = objects.image.place(synthetic_type(objects.layout, flags, dictoffset=-1, cached_keys=cached))
    before = struct.pack("<QQQQ", stored, 0, 0, 0) if version == (3, 11) else struct.pack("<QQQQ", 0, stored - 1, 0, 0)
    address = objects.image.place(struct.pack("<qQ", 1, cls), before=before)
    assert_attributes(objects, address, values)
    static = objects.image.place(synthetic_type(objects.layout, MANAGED_DICT, dictoffset=-1, cached_keys=cached))
    not_heap = objects.image.place(struct.pack("<qQ", 1, static), before=before)
    assert objects.reader.attributes(not_heap) == []  # no ht_cached_keys to read


@pytest.mark.parametrize("version", [(3, 13), (3, 14), (3, 15)], ids=ids)
def test_attributes_inline_after_the_object(version):
    """3.13+: the values at tp_basicsize, in use while `valid`; a materialized dict first."""
    objects = Objects(version)
    keys, values = thread_attributes(objects, "worker", IDENT)
    cached = objects.keys([(key, 0) for key in keys], kind=KEYS_SPLIT)
    flags = HEAPTYPE | MANAGED_DICT | INLINE_VALUES
    cls = objects.image.place(synthetic_type(objects.layout, flags, basicsize=16, dictoffset=-1, cached_keys=cached))
    no_dict = struct.pack("<QQQQ", 0, 0, 0, 0)
    inline = objects.image.place(struct.pack("<qQ", 1, cls) + synthetic_values(objects.layout, values), before=no_dict)
    assert_attributes(objects, inline, values)
    invalid = objects.image.place(struct.pack("<qQ", 1, cls) + synthetic_values(objects.layout, values, valid=0),
                                  before=no_dict)
    assert objects.reader.attributes(invalid) == []
    own = objects.dict(list(zip(keys, values)))
    with_dict = objects.image.place(struct.pack("<qQ", 1, cls) + synthetic_values(objects.layout, [], valid=0),
                                    before=struct.pack("<QQQQ", 0, own, 0, 0))
    assert_attributes(objects, with_dict, values)


# From sys.modules to the names


def threading_of(objects: Objects, threads) -> int:
    """sys.modules of an interpreter of a made-up process: threading, its _active holding
    `threads` (ident key, the Thread's own _ident, its name) as Thread objects of the version."""
    active = []
    for key, own_ident, name in threads:
        keys, values = thread_attributes(objects, name, own_ident)
        attributes = objects.dict(list(zip(keys, values)))
        if objects.version < (3, 11):
            cls = objects.image.place(synthetic_type(objects.layout, HEAPTYPE, basicsize=32, dictoffset=16))
            thread = objects.image.place(struct.pack("<qQQQ", 1, cls, attributes, 0))
        else:
            cls = objects.image.place(synthetic_type(objects.layout, HEAPTYPE | MANAGED_DICT, dictoffset=-1))
            thread = objects.image.place(struct.pack("<qQ", 1, cls), before=struct.pack("<QQQQ", 0, attributes, 0, 0))
        active.append((objects.int(key), thread))
    active_dict = objects.dict(active, kind=KEYS_GENERAL)
    globals_ = objects.dict([(objects.str("_limbo"), objects.dict([])), (objects.str("_active"), active_dict)])
    return objects.dict([(objects.str("sys"), objects.int(0)), (objects.str("threading"), objects.module(globals_))])


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_names_from_sys_modules(version):
    objects = Objects(version)
    modules = threading_of(objects, [(IDENT, IDENT, "MainThread"), (IDENT + 0x800000, IDENT + 0x800000, "worker")])
    assert thread_names_in(objects.reader, modules) == {IDENT: "MainThread", IDENT + 0x800000: "worker"}


def test_a_thread_is_named_only_under_its_own_ident():
    """An entry read from a table being resized or freed: its key another thread's ident."""
    objects = Objects((3, 11))
    other = IDENT + 0x800000
    modules = threading_of(objects, [(IDENT, other, "worker"), (other, other, "other")])
    assert thread_names_in(objects.reader, modules) == {other: "other"}


def test_a_name_replaced_while_it_is_read_is_not_taken():
    """Renamed between reading the Thread's _name and reading its text: the old str may be
    freed and reused by then."""
    objects = Objects((3, 13))
    keys, values = thread_attributes(objects, "before", IDENT)
    cached = objects.keys([(key, 0) for key in keys], kind=KEYS_SPLIT)
    cls = objects.image.place(synthetic_type(objects.layout, HEAPTYPE | MANAGED_DICT | INLINE_VALUES, basicsize=16,
                                             dictoffset=-1, cached_keys=cached))
    thread = objects.image.place(struct.pack("<qQ", 1, cls) + synthetic_values(objects.layout, values),
                                 before=struct.pack("<QQQQ", 0, 0, 0, 0))
    renamed = objects.str("after")
    read = objects.image.read

    def renaming(address, size):
        data = read(address, size)
        if address == values[1] and size > objects.layout.str_state + 1:  # its characters: renamed now
            objects.image.write(thread + 16 + objects.layout.values_start + 8, struct.pack("<Q", renamed))
        return data

    reader = ObjectReader(renaming, objects.layout, TYPES)
    active = objects.dict([(objects.int(IDENT), thread)], kind=KEYS_GENERAL)
    globals_ = objects.dict([(objects.str("_active"), active)])
    modules = objects.dict([(objects.str("threading"), objects.module(globals_))])
    assert thread_names_in(reader, modules) == {}
    assert thread_names_in(reader, modules) == {IDENT: "after"}  # read again, as it is now


def test_no_threading_no_names():
    objects = Objects((3, 11))
    assert thread_names_in(objects.reader, objects.dict([(objects.str("sys"), objects.int(0))])) == {}
    not_a_module = objects.dict([(objects.str("threading"), objects.module(objects.dict([]), type_address=BYTES_TYPE))])
    assert thread_names_in(objects.reader, not_a_module) == {}
    assert thread_names_in(objects.reader, 0) == {}


def test_every_interpreter_and_the_main_one_first():
    """Interpreters listed newest first: where two name a thread (a subinterpreter met the
    main thread), the main interpreter's name."""
    objects, frames, bias = Objects((3, 11)), TABLE[(3, 11)], 0x1000
    main_modules = threading_of(objects, [(IDENT, IDENT, "MainThread")])
    sub_modules = threading_of(objects, [(IDENT, IDENT, "Dummy-1"), (IDENT + 0x800000, IDENT + 0x800000, "sub-worker")])
    place = objects.image.place
    main = place(struct.pack("<Q", 0).ljust(888, b"\0") + struct.pack("<Q", main_modules))  # next, sys.modules
    sub = place(struct.pack("<Q", main).ljust(888, b"\0") + struct.pack("<Q", sub_modules))
    runtime = place(bytes(frames.runtime_interpreters) + struct.pack("<Q", sub))
    interpreter = Interpreter((3, 11, 2), frames, runtime=runtime - bias, code_type=0, objects=objects.layout,
                              interp_modules=888, types={kind: address - bias for kind, address in TYPES.items()})
    assert read_thread_names(objects.image.read, interpreter, runtime) == {
        IDENT: "MainThread", IDENT + 0x800000: "sub-worker"}
    assert read_thread_names(Image().read, interpreter, runtime) == {}


# Thread states: which TID each ident is (for the tools whose events carry TIDs)


def fields(size: int, **values: tuple[int, str, int]) -> bytes:
    """size bytes, each named value (offset, struct format, value) in its place."""
    data = bytearray(size)
    for offset, form, value in values.values():
        struct.pack_into(form, data, offset, value)
    return bytes(data)


def thread_state(frames, ident: int, native_tid: int = 0):
    """A thread state, given the address of the next one."""
    values = {"ident": (frames.tstate_thread_id, "<Q", ident)}
    if native_tid:
        values["tid"] = (frames.tstate_native_thread_id, "<i", native_tid)
    return lambda following: fields(512, next=(frames.tstate_next, "<Q", following), **values)


def interpreter_with_states(objects, frames, states) -> tuple[Interpreter, int]:
    """One interpreter with these thread states (thread_state's) chained in order."""
    place, following = objects.image.place, 0
    for state in reversed(states):
        following = place(state(following))
    main = place(fields(512, threads=(frames.interp_threads, "<Q", following)))
    runtime = place(fields(frames.runtime_interpreters + 8, first=(frames.runtime_interpreters, "<Q", main)))
    interpreter = Interpreter((objects.version[0], objects.version[1], 0), frames, runtime=runtime, code_type=0,
                              objects=objects.layout, interp_modules=0, types={})
    return interpreter, runtime


def test_thread_ids_from_311_thread_states():
    """3.11+: native_thread_id, in the state itself; a state with no TID yet (0) is left out."""
    objects, frames = Objects((3, 11)), TABLE[(3, 11)]
    interpreter, runtime = interpreter_with_states(objects, frames, [
        thread_state(frames, IDENT, 4100), thread_state(frames, IDENT + 0x800000, 4101),
        thread_state(frames, IDENT + 0x1000000)])
    assert read_thread_ids(objects.image.read, interpreter, runtime) == {IDENT: 4100, IDENT + 0x800000: 4101}


def test_thread_ids_from_glibc_pthreads_before_311():
    """3.9 and 3.10: the TID is in glibc's struct pthread, which the ident points at; an ident
    pointing at nothing readable is left out."""
    objects, frames = Objects((3, 9)), TABLE[(3, 9)]
    place = objects.image.place
    first = place(fields(frames.pthread_tid + 4, tid=(frames.pthread_tid, "<i", 4200)))
    second = place(fields(frames.pthread_tid + 4, tid=(frames.pthread_tid, "<i", 4201)))
    interpreter, runtime = interpreter_with_states(objects, frames, [
        thread_state(frames, first), thread_state(frames, second), thread_state(frames, 0x10)])
    assert read_thread_ids(objects.image.read, interpreter, runtime) == {first: 4200, second: 4201}
    assert read_thread_ids(Image().read, interpreter, runtime) == {}


def test_thread_states_read_torn_into_a_loop_end():
    """A list read while it changed can loop back on itself: the walk stops after THREADS_MAX
    states, with each ident once."""
    objects, frames = Objects((3, 11)), TABLE[(3, 11)]
    interpreter, runtime = interpreter_with_states(objects, frames, [thread_state(frames, IDENT, 4100)])
    main = objects.image.read(runtime + frames.runtime_interpreters, 8)
    first = struct.unpack("<Q", objects.image.read(struct.unpack("<Q", main)[0] + frames.interp_threads, 8))[0]
    objects.image.write(first + frames.tstate_next, struct.pack("<Q", first))  # its next is itself
    reads = []

    def counted(address, size):
        reads.append(address)
        return objects.image.read(address, size)

    assert read_thread_ids(counted, interpreter, runtime) == {IDENT: 4100}
    assert reads.count(first + frames.tstate_next) == THREADS_MAX


def test_os_names_are_kept_by_process_and_thread(monkeypatch):
    """A TID comes back, in another process: each thread keeps its own name."""
    import pybpftrace.thread_names as thread_names

    names = {(100, 7): "worker", (200, 7): "python3"}
    monkeypatch.setattr(thread_names, "os_thread_name", lambda pid, tid: names.get((pid, tid), ""))
    labels = thread_names.ThreadLabels()
    assert [labels.os_name(100, 7), labels.os_name(200, 7)] == ["worker", "python3"]
    del names[(100, 7)]  # gone: the name read first is kept
    assert labels.name(100, 7) == "worker"
