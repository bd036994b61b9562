"""Python's repr() of an object in another process's memory, as `dump --locals` shows it.

The process runs on and is not trusted: every object is read within bounds and checked to be
exactly of the type its repr assumes (by its type object's address), and every walk is
bounded. None, bool, int (any size up to INT_DIGITS_MAX), float, str and bytes (cut at
TEXT_MAX, saying how long they are), and tuple, list, dict, set and frozenset (ITEMS_MAX
items, DEPTH_MAX deep, as reprlib marks what it leaves out: `...`) read as repr() prints
them; any other object shows as `<TypeName at 0x…>`, its type's tp_name (as py-spy does), and
memory that cannot be read as `<unreadable at 0x…>`."""

from __future__ import annotations

import struct
from typing import Callable, Optional

from .escaping import shown
from .pyobjects import DIGIT_BITS, Layout, decode_str, int_size, str_shape, word

Read = Callable[[int, int], Optional[bytes]]

TEXT_MAX = 200  # characters of a str, bytes of a bytes
ITEMS_MAX = 20  # items of a container
DEPTH_MAX = 4  # containers within containers
INT_DIGITS_MAX = 480  # 30-bit digits (some 4,300 decimal ones, CPython's own limit for str(int))
OBJECTS_MAX = 500  # objects read for one repr
TYPE_NAME_MAX = 100  # bytes of a tp_name
TP_NAME = 24  # PyTypeObject.tp_name, after PyObject_VAR_HEAD (3.7 to 3.15)
LIST_ITEMS = 24  # PyListObject.ob_item, a pointer to the items
LIST_ALLOCATED = 32  # and how many it has room for
SET_TABLE = 40  # PySetObject.table, after fill, used and mask
SET_MASK = 32
SET_ENTRY = 16  # a setentry: key, hash
SET_SLOTS_MAX = 1 << 20  # a mask beyond this is no set's that can be walked here
CELL_REF = 16  # PyCellObject.ob_ref

class Reprs:
    """repr() of the objects of one process (types: kind -> run-time address, of the types and
    singletons interpreter.OBJECT_TYPE_SYMBOLS names;
    dict_entries: a dict's (key, value) addresses, as thread_names.ObjectReader reads them)."""

    def __init__(self, read: Read, layout: Layout, types: dict[str, int],
                 dict_entries: Callable[[int], list[tuple[int, int]]]):
        self._read = read
        self._layout = layout
        self._types = types
        self._kinds = {address: kind for kind, address in types.items()}
        self._dict_entries = dict_entries
        self._budget = 0

    def repr(self, address: int) -> str:
        self._budget = OBJECTS_MAX
        return self._repr(address, 0)

    def kind(self, address: int) -> Optional[str]:
        """What the object at address is among REPR_SYMBOLS' kinds (None: another type, or
        unreadable)."""
        if address in self._kinds and self._kinds[address] in ("None", "True", "False"):
            return self._kinds[address]
        header = self._read(address, 16)
        return self._kinds.get(word(header, self._layout.ob_type)) if header is not None else None

    def cell_contents(self, address: int) -> Optional[int]:
        """The object a cell holds (0: empty), or None when address is no cell."""
        if self.kind(address) != "cell":
            return None
        data = self._read(address + CELL_REF, 8)
        return word(data, 0) if data is not None else None

    def _repr(self, address: int, depth: int) -> str:
        self._budget -= 1
        if self._budget < 0:
            return "..."
        kind = self.kind(address)
        if kind in ("None", "True", "False"):
            return kind
        reader = getattr(self, f"_repr_{kind}", None) if kind not in (None, "cell", "bool") else None
        text = reader(address, depth) if reader is not None else None
        return text if text is not None else self._opaque(address)

    def _opaque(self, address: int) -> str:
        header = self._read(address, 16)
        if header is None:
            return f"<unreadable at {address:#x}>"
        name = self._read(word(header, self._layout.ob_type) + TP_NAME, 8)
        text = self._c_string(word(name, 0)) if name is not None else None
        if not text:
            return f"<object of an unreadable type at {address:#x}>"
        return f"<{shown(text)} at {address:#x}>"

    def _c_string(self, address: int) -> Optional[str]:
        data = self._read(address, TYPE_NAME_MAX) if address else None
        if data is None:  # near the end of a mapping: byte by byte, as far as it goes
            data = b""
            while address and len(data) < TYPE_NAME_MAX and (byte := self._read(address + len(data), 1)):
                data += byte
                if byte == b"\0":
                    break
        text = data.split(b"\0", 1)[0].decode(errors="replace")
        return text + ("…" if b"\0" not in data else "") if text else None

    def _repr_int(self, address: int, depth: int) -> Optional[str]:
        layout = self._layout
        header = self._read(address, layout.int_digits)
        if header is None:
            return None
        digits, negative = int_size(layout, header)
        if digits > INT_DIGITS_MAX:
            return f"<int of {digits * DIGIT_BITS} bits at {address:#x}>"
        data = self._read(address + layout.int_digits, 4 * digits)
        if data is None:
            return None
        magnitude = sum(int.from_bytes(data[4 * i : 4 * i + 4], "little") << (DIGIT_BITS * i) for i in range(digits))
        return repr(-magnitude if negative else magnitude)

    def _repr_float(self, address: int, depth: int) -> Optional[str]:
        data = self._read(address + self._layout.float_value, 8)
        return repr(struct.unpack("<d", data)[0]) if data is not None else None

    def _repr_str(self, address: int, depth: int) -> Optional[str]:
        layout = self._layout
        header = self._read(address, layout.str_state + 1)
        shape = str_shape(layout, header) if header is not None else None
        if shape is None:
            return None
        length, kind, start = shape
        data = self._read(address, start + min(length, TEXT_MAX) * kind)
        text = decode_str(layout, data) if data is not None else None
        if text is None:
            return None
        if length > TEXT_MAX:
            return f"{text.start!r}...({length} characters)"
        return repr(text)

    def _repr_bytes(self, address: int, depth: int) -> Optional[str]:
        layout = self._layout
        header = self._read(address, layout.bytes_data)
        length = word(header, layout.ob_size, signed=True) if header is not None else -1
        if length < 0:
            return None
        data = self._read(address + layout.bytes_data, min(length, TEXT_MAX))
        if data is None:
            return None
        return repr(data) + (f"...({length} bytes)" if length > TEXT_MAX else "")

    def _items(self, pointer: int, count: int) -> Optional[list[int]]:
        data = self._read(pointer, 8 * min(count, ITEMS_MAX)) if count else b""
        return [word(data, 8 * i) for i in range(len(data) // 8)] if data is not None else None

    def _sequence(self, items: Optional[list[int]], count: int, depth: int, opening: str, closing: str) -> Optional[str]:
        if items is None or count < 0:
            return None
        if depth >= DEPTH_MAX and count:
            return f"{opening}...{closing}"
        shown_items = [self._repr(item, depth + 1) if item else "<NULL>" for item in items]
        if count > len(items):
            shown_items.append("...")
        return opening + ", ".join(shown_items) + closing

    def _repr_tuple(self, address: int, depth: int) -> Optional[str]:
        header = self._read(address, 24)
        count = word(header, self._layout.ob_size, signed=True) if header is not None else -1
        items = self._items(address + self._layout.tuple_items, count) if count >= 0 else None
        text = self._sequence(items, count, depth, "(", ")")
        return text[:-1] + ",)" if text is not None and count == 1 else text

    def _repr_list(self, address: int, depth: int) -> Optional[str]:
        header = self._read(address, LIST_ALLOCATED + 8)
        if header is None:
            return None
        count, allocated = word(header, self._layout.ob_size, signed=True), word(header, LIST_ALLOCATED, signed=True)
        if not 0 <= count <= allocated:  # items beyond its array would be read: not a list to trust
            return f"<unreadable list at {address:#x}>"
        return self._sequence(self._items(word(header, LIST_ITEMS), count), count, depth, "[", "]")

    def _repr_dict(self, address: int, depth: int) -> Optional[str]:
        entries = self._dict_entries(address)
        if not entries:
            return "{}" if self._read(address, 8) is not None else None
        if depth >= DEPTH_MAX:
            return "{...}"
        shown_items = [f"{self._repr(key, depth + 1)}: {self._repr(value, depth + 1)}"
                       for key, value in entries[:ITEMS_MAX]]
        return "{" + ", ".join(shown_items + ["..."] * (len(entries) > ITEMS_MAX)) + "}"

    def _set_keys(self, address: int) -> Optional[tuple[list[int], int]]:
        """The first ITEMS_MAX keys of a set, in its table's order, and how many it has."""
        header = self._read(address, SET_TABLE + 8)
        if header is None:
            return None
        used, mask, table = word(header, 24, signed=True), word(header, SET_MASK), word(header, SET_TABLE)
        if used < 0 or mask >= SET_SLOTS_MAX:
            return None
        keys: list[int] = []
        for start in range(0, mask + 1, 64):  # a bounded read at a time, until enough keys
            count = min(64, mask + 1 - start)
            data = self._read(table + start * SET_ENTRY, count * SET_ENTRY)
            if data is None:
                return None
            for index in range(count):
                key = word(data, index * SET_ENTRY)
                if key and word(data, index * SET_ENTRY + 8, signed=True) != -1:  # -1: a deleted key's dummy
                    keys.append(key)
            if len(keys) >= min(used, ITEMS_MAX):
                break
        return keys[:ITEMS_MAX], used

    def _repr_set(self, address: int, depth: int, name: str = "set") -> Optional[str]:
        found = self._set_keys(address)
        if found is None:
            return None
        keys, used = found
        if not used:
            return f"{name}()"
        text = self._sequence(keys, used, depth, "{", "}")
        return text if name == "set" or text is None else f"{name}({text})"

    def _repr_frozenset(self, address: int, depth: int) -> Optional[str]:
        return self._repr_set(address, depth, "frozenset")
