"""object_repr over a made-up memory: exact reprs, bounds, and damaged objects said so."""

import struct

from pybpftrace.object_repr import ITEMS_MAX, Reprs
from pybpftrace.pyobjects import layout_for

LAYOUT = layout_for((3, 11))
TYPES = {"int": 0x1000, "list": 0x2000, "tuple": 0x3000, "None": 0x4000, "True": 0x4100, "False": 0x4200}
NAMES = 0x9000  # where the type objects' tp_name strings are


class Memory:
    def __init__(self):
        self.segments: dict[int, bytes] = {}

    def put(self, address: int, data: bytes) -> int:
        self.segments[address] = data
        return address

    def read(self, address: int, size: int):
        for start, data in self.segments.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start : address - start + size]
        return None


def header(kind_address: int, size: int = 0) -> bytes:
    return struct.pack("<qQq", 1, kind_address, size)


def small_int(memory: Memory, address: int, value: int) -> int:
    return memory.put(address, header(TYPES["int"], 1 if value else 0) + struct.pack("<I", value) + b"\0" * 4)


def a_list(memory: Memory, address: int, items: list[int], allocated: int = -1) -> int:
    array = memory.put(address + 0x100, b"".join(struct.pack("<Q", item) for item in items))
    allocated = len(items) if allocated < 0 else allocated
    return memory.put(address, header(TYPES["list"], len(items)) + struct.pack("<Qq", array, allocated))


def reprs(memory: Memory) -> Reprs:
    for kind, address in TYPES.items():  # type objects named by tp_name
        name = memory.put(NAMES + address, kind.encode() + b"\0")
        memory.put(address, b"\0" * 24 + struct.pack("<Q", name))
    return Reprs(memory.read, LAYOUT, TYPES, lambda address: [])


def test_ints_lists_and_singletons():
    memory = Memory()
    numbers = [small_int(memory, 0x10000 + 0x40 * i, i) for i in range(ITEMS_MAX + 5)]
    short = a_list(memory, 0x20000, [numbers[1], TYPES["None"], TYPES["True"]])
    long = a_list(memory, 0x30000, numbers)
    shown = reprs(memory)
    assert shown.repr(short) == "[1, None, True]"
    assert shown.repr(long) == "[" + ", ".join(map(str, range(ITEMS_MAX))) + ", ...]"


def test_a_list_that_holds_itself_is_cut_at_the_depth():
    memory = Memory()
    looped = a_list(memory, 0x20000, [0x20000])
    assert reprs(memory).repr(looped) == "[[[[[...]]]]]"


def test_damaged_objects_are_said_unreadable():
    memory = Memory()
    lying = a_list(memory, 0x20000, [0x10000], allocated=0)  # one item, room for none
    garbage_type = memory.put(0x30000, header(0xDEAD0000))
    shown = reprs(memory)
    assert shown.repr(lying) == "<unreadable list at 0x20000>"
    assert shown.repr(garbage_type) == "<object of an unreadable type at 0x30000>"
    assert shown.repr(0x50000) == "<unreadable at 0x50000>"
