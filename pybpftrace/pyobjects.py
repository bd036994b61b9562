"""CPython objects decoded from snapshots of their memory: where each version keeps their
fields (one table), which type an object has, and the values they hold.

The kernel copies the first bytes of an object as it was when a probe fired (objects passed
to probes are often temporary); this module reads str, bytes, int, float, bool, None and
tuples out of those bytes. Types are told apart by address: the type objects and the None,
True and False singletons are symbols of the interpreter's binary, moved by its load bias.
The table also says where dicts, types, modules and instances keep what reading thread names
takes (thread_names.py).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional, Union

from .escaping import shown
from .probes import NotAnElf, defined_symbols, parsed_elf
from .target import PythonBinary
from .versions import Version

PAGE = 4096
DIGIT_BITS = 30  # CPython's int digits on 64-bit builds
JSON_SAFE_INT = 2**53  # beyond this, JSON readers lose precision


class Attributes(Enum):
    """Where an instance of a class (one without __slots__) keeps its attributes."""

    DICT_AT_OFFSET = "dict at offset"  # 3.7-3.10: a __dict__ at its type's tp_dictoffset
    VALUES_OR_DICT = "values or dict"  # 3.11: values (keys in the class) at -32, else a dict at -24
    TAGGED_VALUES_OR_DICT = "tagged"  # 3.12: at -24 a dict, or values - 1 (bit 0 set)
    INLINE_VALUES = "inline values"  # 3.13+: a dict at -24, else values right after the object


@dataclass(frozen=True)
class Layout:
    """Offsets of object fields in one range of CPython versions (64-bit, default build).
    Checked against each version's headers (offsetof), its DWARF and live processes."""

    first: tuple[int, int]
    last: tuple[int, int]
    tuple_items: int  # PyTupleObject.ob_item; 3.14 put a cached hash before it
    ascii_data: int  # characters of a compact ASCII str, after PyASCIIObject (3.12 dropped wstr)
    compact_data: int  # of a compact non-ASCII str, after PyCompactUnicodeObject
    int_tag: bool  # 3.12+: lv_tag holds sign and digit count; before, ob_size is ±digits
    keys_log2: bool  # 3.11+: PyDictKeysObject's sizes are dk_log2_size and dk_log2_index_bytes; before, dk_size
    keys_nentries: int  # PyDictKeysObject.dk_nentries
    keys_indices: int  # dk_indices, the hash table; the entries follow it
    attributes: Attributes
    cached_keys: int = 0  # PyHeapTypeObject.ht_cached_keys: the keys of attributes kept as values (3.11+)
    values_start: int = 0  # PyDictValues.values: 3.13+ keep capacity, size, embedded and valid before
    ob_type: int = 8
    ob_size: int = 16  # PyVarObject.ob_size: items of a tuple, bytes of a bytes
    str_length: int = 16
    str_state: int = 32  # the state bitfield: interned:2, kind:3, compact:1, ascii:1
    bytes_data: int = 32  # after ob_shash
    int_value: int = 16  # ob_size, or lv_tag
    int_digits: int = 24
    float_value: int = 16
    tp_name: int = 24  # in PyTypeObject
    tp_basicsize: int = 32
    tp_flags: int = 168
    tp_dictoffset: int = 288
    dict_keys: int = 32  # PyDictObject.ma_keys
    dict_values: int = 40  # ma_values: NULL, or the values of a split table (its keys shared)
    keys_size: int = 8  # PyDictKeysObject.dk_size; 3.11+ dk_log2_size, a byte
    keys_index_bytes: int = 9  # 3.11+: dk_log2_index_bytes
    keys_kind: int = 10  # 3.11+: dk_kind
    values_valid: int = 3  # 3.13+: PyDictValues.valid
    managed_dict: int = -24  # 3.11+: MANAGED_DICT_OFFSET, before the object (and its GC header)
    managed_values: int = -32  # 3.11: the values pointer
    module_dict: int = 16  # PyModuleObject.md_dict


_STR_OLD = dict(tuple_items=24, ascii_data=48, compact_data=72, int_tag=False)
_STR_312 = dict(tuple_items=24, ascii_data=40, compact_data=56, int_tag=True)
_STR_314 = dict(tuple_items=32, ascii_data=40, compact_data=56, int_tag=True)
_KEYS_SIZED = dict(keys_log2=False, keys_nentries=32, keys_indices=40)  # after dk_size, dk_lookup, dk_usable
_KEYS_LOG2 = dict(keys_log2=True, keys_nentries=24, keys_indices=32)  # after dk_version, dk_usable

LAYOUTS = (
    Layout((3, 7), (3, 10), **_STR_OLD, **_KEYS_SIZED, attributes=Attributes.DICT_AT_OFFSET),
    Layout((3, 11), (3, 11), **_STR_OLD, **_KEYS_LOG2, attributes=Attributes.VALUES_OR_DICT, cached_keys=872),
    Layout((3, 12), (3, 12), **_STR_312, **_KEYS_LOG2, attributes=Attributes.TAGGED_VALUES_OR_DICT,
           cached_keys=880),
    Layout((3, 13), (3, 13), **_STR_312, **_KEYS_LOG2, attributes=Attributes.INLINE_VALUES, cached_keys=880,
           values_start=8),
    Layout((3, 14), (3, 14), **_STR_314, **_KEYS_LOG2, attributes=Attributes.INLINE_VALUES, cached_keys=880,
           values_start=8),
    Layout((3, 15), (3, 15), **_STR_314, **_KEYS_LOG2, attributes=Attributes.INLINE_VALUES, cached_keys=888,
           values_start=8),
)

# Exported only by free-threaded builds, whose object header is another shape.
FREE_THREADED_SYMBOL = "_Py_DecRefShared"
TYPE_SYMBOLS = {
    "PyUnicode_Type": "str",
    "PyBytes_Type": "bytes",
    "PyLong_Type": "int",
    "PyFloat_Type": "float",
    "PyTuple_Type": "tuple",
    "PyBool_Type": "bool",
}
SINGLETONS = {"_Py_NoneStruct": None, "_Py_TrueStruct": True, "_Py_FalseStruct": False}


def layout_for(version: Optional[Version]) -> Optional[Layout]:
    if version is not None:
        for layout in LAYOUTS:
            if layout.first <= version[:2] <= layout.last:
                return layout
    return None


@dataclass(frozen=True)
class ObjectModel:
    """What decoding a binary's objects takes: its layout (None: unknown, objects are shown
    by address) and the link-time addresses of its types and singletons."""

    layout: Optional[Layout]
    symbols: dict[str, int]
    pie: bool

    def bias(self, tuple_type: int) -> Optional[int]:
        """The binary's load bias, from the runtime address of PyTuple_Type (the type of every
        args tuple): None when that cannot be its address."""
        linked = self.symbols.get("PyTuple_Type")
        if linked is None:
            return None
        bias = tuple_type - linked
        valid = bias % PAGE == 0 if self.pie else bias == 0
        return bias if valid else None


def _read_symbols(path: str) -> dict[str, int]:
    return parsed_elf(path, lambda elf, stream: defined_symbols(elf, (*TYPE_SYMBOLS, *SINGLETONS,
                                                                      FREE_THREADED_SYMBOL)))


def object_model(binary: PythonBinary) -> ObjectModel:
    """The model of a binary's objects (read while the binary can be opened: a process's
    mapped file is reachable only while it lives)."""
    try:
        symbols = _read_symbols(binary.path)
    except NotAnElf:  # damaged: its objects are shown by address, undecoded
        symbols = {}
    layout = layout_for(binary.version)
    if FREE_THREADED_SYMBOL in symbols or not all(name in symbols for name in TYPE_SYMBOLS):
        layout = None
    return ObjectModel(layout, symbols, binary.probes.pie)


# Decoded values: str, bytes, int, float, bool and None as themselves, and these.


@dataclass(frozen=True)
class Truncated:
    """A str or bytes longer than its snapshot: its start and its whole length."""

    start: Union[str, bytes]
    length: int


@dataclass(frozen=True)
class LargeInt:
    """An int with more digits than its snapshot holds."""

    digits: int  # 30-bit digits
    negative: bool


@dataclass(frozen=True)
class Opaque:
    """An object not decoded: its type's name (None: unknown) and its address."""

    type_name: Optional[str]
    address: int


@dataclass(frozen=True)
class Unreadable:
    """An object whose memory could not be read."""

    address: int


@dataclass(frozen=True)
class Items:
    """A tuple: its first items (decoded) and its length."""

    items: tuple
    length: int


Value = Union[str, bytes, int, float, bool, None, Truncated, LargeInt, Opaque, Unreadable, Items]


@dataclass(frozen=True)
class Snapshot:
    """The first bytes of an object, for a tuple snapshots of its first items, and where the
    name of its type is (its tp_name; 0: not read)."""

    address: int
    data: bytes
    items: tuple["Snapshot", ...] = ()
    type_name: int = 0


def word(data: bytes, offset: int, signed: bool = False) -> int:
    """The 8-byte little-endian word at offset."""
    return int.from_bytes(data[offset : offset + 8], "little", signed=signed)


def str_shape(layout: Layout, data: bytes) -> Optional[tuple[int, int, int]]:
    """A compact str's length, bytes a character and where its characters start, from its
    header (data up to its state); None for a legacy string, its characters elsewhere."""
    length = word(data, layout.str_length, signed=True)
    state = data[layout.str_state]
    kind, compact, ascii_only = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
    if not compact or kind not in (1, 2, 4) or length < 0:
        return None
    return length, kind, layout.ascii_data if ascii_only else layout.compact_data


def decode_str(layout: Layout, data: bytes) -> Optional[Value]:
    """A compact str: the text, Truncated when data ends before it does; None if legacy."""
    shape = str_shape(layout, data)
    if shape is None:
        return None
    length, kind, start = shape
    available = max(0, (len(data) - start) // kind)
    codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
    text = data[start : start + min(length, available) * kind].decode(codec, "replace")
    return text if available >= length else Truncated(text, length)


def _decode_bytes(layout: Layout, data: bytes) -> Optional[Value]:
    length = word(data, layout.ob_size, signed=True)
    if length < 0:  # no bytes object's: shown by address
        return None
    available = max(0, len(data) - layout.bytes_data)
    start = data[layout.bytes_data : layout.bytes_data + min(length, available)]
    return start if available >= length else Truncated(start, length)


def int_size(layout: Layout, data: bytes) -> tuple[int, bool]:
    """An int's count of digits and its sign, from its header."""
    value = word(data, layout.int_value, signed=not layout.int_tag)
    if layout.int_tag:  # sign in bits 0-1 (0 positive, 1 zero, 2 negative), digits from bit 3
        return value >> 3, value & 3 == 2
    return abs(value), value < 0


def decode_int(layout: Layout, data: bytes) -> Value:
    """An int: its value, LargeInt when data ends before its digits do."""
    digits, negative = int_size(layout, data)
    if layout.int_digits + 4 * digits > len(data):
        return LargeInt(digits, negative)
    magnitude = 0
    for index in range(digits):
        offset = layout.int_digits + 4 * index
        magnitude |= int.from_bytes(data[offset : offset + 4], "little") << (DIGIT_BITS * index)
    return -magnitude if negative else magnitude


def _decode_float(layout: Layout, data: bytes) -> Value:
    return struct.unpack_from("<d", data, layout.float_value)[0]


# Each decoder, and the bytes of its object's header it needs.
DECODERS: dict[str, tuple[Callable[[Layout, bytes], Optional[Value]], Callable[[Layout], int]]] = {
    "str": (decode_str, lambda layout: layout.str_state + 1),
    "bytes": (_decode_bytes, lambda layout: layout.bytes_data),
    "int": (decode_int, lambda layout: layout.int_digits),
    "float": (_decode_float, lambda layout: layout.float_value + 8),
}


def _decode_known(kind: Optional[str], layout: Layout, data: bytes) -> Optional[Value]:
    if kind not in DECODERS:
        return None
    decoder, header = DECODERS[kind]
    return decoder(layout, data) if len(data) >= header(layout) else None


class Decoder:
    """Decodes the snapshots of one process's objects. type_name(name address, type address)
    is the text of a type's name, or None when it is not known."""

    def __init__(self, model: ObjectModel, bias: Optional[int], type_name: Callable[[int, int], Optional[str]]):
        self._model = model
        self._type_name = type_name
        self._kinds: dict[int, str] = {}
        self._singletons: dict[int, Value] = {}
        if model.layout is not None and bias is not None:
            self._kinds = {model.symbols[name] + bias: kind for name, kind in TYPE_SYMBOLS.items()}
            self._singletons = {
                model.symbols[name] + bias: value for name, value in SINGLETONS.items() if name in model.symbols
            }

    def decode_args(self, snapshot: Snapshot) -> Value:
        """The args tuple: shown by address where the layout is unknown."""
        if self._model.layout is None:
            return Opaque("tuple", snapshot.address)
        return self.decode(snapshot)

    def decode(self, snapshot: Snapshot) -> Value:
        address, data, layout = snapshot.address, snapshot.data, self._model.layout
        if address in self._singletons:
            return self._singletons[address]
        if not data:
            return Unreadable(address)
        if layout is None or len(data) < layout.ob_size + 8:
            return Opaque(None, address)
        kind = self._kinds.get(word(data, layout.ob_type))
        if kind == "tuple":
            return Items(tuple(self.decode(item) for item in snapshot.items), word(data, layout.ob_size))
        decoded = _decode_known(kind, layout, data)
        if decoded is not None:
            return decoded
        return Opaque(kind or self._name_of_type(snapshot, layout), address)

    def _name_of_type(self, snapshot: Snapshot, layout: Layout) -> Optional[str]:
        if not snapshot.type_name:
            return None
        return self._type_name(snapshot.type_name, word(snapshot.data, layout.ob_type))


# Output: a Python-like repr, and JSON values (with the type where JSON would lose it).

MORE = "…"


def to_text(value: Value) -> str:
    if isinstance(value, Items):
        items = [to_text(item) for item in value.items]
        if value.length > len(value.items):
            items.append(f"{MORE}{value.length - len(value.items)} more")
        return "(" + ", ".join(items) + ("," if value.length == len(value.items) == 1 else "") + ")"
    if isinstance(value, Truncated):
        unit = "chars" if isinstance(value.start, str) else "bytes"
        return f"{value.start!r}{MORE}({value.length} {unit})"
    if isinstance(value, LargeInt):
        return f"<{'negative ' if value.negative else ''}int of {value.digits} {DIGIT_BITS}-bit digits>"
    if isinstance(value, Opaque):
        kind = f"{shown(value.type_name)} object" if value.type_name else "object"  # type unknown
        return f"<{kind} at {value.address:#x}>"
    if isinstance(value, Unreadable):
        return f"<unreadable object at {value.address:#x}>"
    return repr(value)


def to_json(value: Value):
    """A JSON value: str, int, float, bool, None and complete tuples (arrays) as themselves;
    what JSON cannot hold exactly, as an object naming the type."""
    if isinstance(value, Items):
        items = [to_json(item) for item in value.items]
        if value.length == len(value.items):
            return items
        return {"type": "tuple", "items": items, "length": value.length}
    if isinstance(value, bytes):
        return {"type": "bytes", "hex": value.hex()}
    if isinstance(value, Truncated):
        if isinstance(value.start, bytes):
            return {"type": "bytes", "hex": value.start.hex(), "truncated": True, "length": value.length}
        return {"type": "str", "value": value.start, "truncated": True, "length": value.length}
    if isinstance(value, LargeInt):
        return {"type": "int", "truncated": True, "digits": value.digits, "negative": value.negative}
    if isinstance(value, Opaque):
        return {"type": value.type_name, "address": f"{value.address:#x}"}
    if isinstance(value, Unreadable):
        return {"type": None, "address": f"{value.address:#x}", "unreadable": True}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JSON_SAFE_INT:
        return {"type": "int", "value": str(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"type": "float", "value": repr(value)}
    return value
