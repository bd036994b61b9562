"""Decoding CPython objects from snapshots of their memory: bytes copied from live objects of
the real interpreters the tests trace (with the type addresses of each binary's .dynsym), and
synthetic snapshots built with struct for the edge cases."""

import struct

import pytest

from objects import synthetic_str
from pybpftrace import pyobjects
from pybpftrace.pyobjects import (
    Decoder,
    Items,
    LargeInt,
    ObjectModel,
    Opaque,
    Snapshot,
    Truncated,
    Unreadable,
    layout_for,
    object_model,
    to_json,
    to_text,
)
from pybpftrace.target import inspect_binary
from support import dynamic_symbols

# .dynsym of each binary (readelf --dyn-syms): the non-PIE Debian executables, bias 0.
SYMBOL_NAMES = ("PyUnicode_Type", "PyBytes_Type", "PyLong_Type", "PyFloat_Type", "PyTuple_Type", "PyBool_Type",
                "_Py_NoneStruct", "_Py_TrueStruct", "_Py_FalseStruct")
SYMBOLS = {
    (3, 9): (0x8FF9A0, 0x905D80, 0x905F20, 0x905280, 0x8FFE80, 0x9061E0, 0x9076E0, 0x8F5800, 0x8F57E0),
    (3, 11): (0x958980, 0x958B20, 0x958CC0, 0x950900, 0x9587E0, 0x956820, 0x959CC0, 0x95A0A0, 0x9479E0),
    (3, 13): (0xA06B80, 0xA06D20, 0xA06EC0, 0x9FEBA0, 0xA069E0, 0xA04200, 0xA084F0, 0xA08540, 0x9F5A60),
    (3, 14): (0xB647C0, 0xB64960, 0xB64B00, 0xB5C5A0, 0xB64620, 0xB61C60, 0xB52BB0, 0xB66100, 0xB52DE0),
    (3, 15): (0xBFC0E0, 0xBFC2A0, 0xBFC460, 0xBF3980, 0xBFBF20, 0xBF9440, 0xBE8E30, 0xBFDA80, 0xBE9080),
}


def decoder(version, type_name=lambda name, type_address: None, bias=0, pie=False):
    model = ObjectModel(layout_for(version), dict(zip(SYMBOL_NAMES, SYMBOLS[version[:2]])), pie)
    return Decoder(model, bias, type_name)


def live(hex_words: str) -> bytes:
    """Bytes as dumped from a live object: 8-byte groups in memory order."""
    return bytes.fromhex(hex_words.replace(" ", ""))


# ctypes.string_at(id(object), n) in each real interpreter
REAL = [
    ((3, 9), "caf\xe9",  # latin-1; the state's upper bytes are garbage, only its low byte counts
     "0600000000000000 a0f98f0000000000 0400000000000000 aa4dfd43d01e0976 a476900000000000 0000000000000000"
     " 0000000000000000 0000000000000000 0000000000000000 636166e900730000"),
    ((3, 9), b"bytes",
     "0600000000000000 805d900000000000 0500000000000000 7a5e4572054adc40 6279746573000000 0000000000000000"),
    ((3, 9), -(2**100),  # ob_size -4: four 30-bit digits, negative
     "0400000000000000 205f900000000000 fcffffffffffffff 0000000000000000 0000000000040000 0000000000000000"),
    ((3, 11), "text",  # ASCII: its characters after wstr, at 48
     "04ca9a3b00000000 8089950000000000 0400000000000000 2b01aea3ff95bb3b e500000000000000 0000000000000000"
     " 7465787400000000 ffc99a3b00000000"),
    ((3, 11), 1.5, "0400000000000000 0009950000000000 000000000000f83f"),
    ((3, 13), 2**100,  # lv_tag 0x20: four digits, positive
     "0200000000000000 c06ea00000000000 2000000000000000 0000000000000000 0000000000040000 0031000000000000"),
    ((3, 13), -7, "0400000000000000 c06ea00000000000 0a00000000000000 0700000000000000"),
    ((3, 14), 0,  # lv_tag 5: zero, and 3.14's immortal small int bit
     "000000c000000500 004bb60000000000 0500000000000000 0000000000000000"),
    ((3, 14), 42, "000000c000000500 004bb60000000000 0c00000000000000 2a00000000000000"),
    ((3, 15), "\u20ac12",  # UCS-2, after PyCompactUnicodeObject at 56; garbage above the state byte
     "0200000000000000 e0c0bf0000000000 0300000000000000 95cbf24f8922ebcf 2861665c78653900 0000000000000000"
     " 0000000000000000 ac20310032000000 6d702e7079270000 0000000000000000"),
]


@pytest.mark.parametrize("version, value, dump", REAL, ids=[f"{v[0]}.{v[1]}-{value!r}" for v, value, _ in REAL])
def test_objects_of_the_real_interpreters(version, value, dump):
    decoded = decoder(version).decode(Snapshot(0x7F0000001000, live(dump)))
    assert decoded == value and type(decoded) is type(value)


def test_tuple_of_314_keeps_a_hash_before_its_items():
    data = live("0200000000000000 2046b60000000000 0200000000000000 706ae719faea423e 0009bb0000000000"
                " 703fba0000000000")  # ("nested", 1) in 3.14
    layout = layout_for((3, 14, 0))
    assert [int.from_bytes(data[offset : offset + 8], "little") for offset in (32, 40)] == [0xBB0900, 0xBA3F70]
    assert layout.tuple_items == 32 and layout_for((3, 13, 5)).tuple_items == 24
    nested = Snapshot(0xBB0900, live("000000c000000500 c047b60000000000 0600000000000000 0000000000000000"
                                      " e700000000000000 6e65737465640000"))  # "nested", ASCII at 40
    one = Snapshot(0xBA3F70, live("000000c000000500 004bb60000000000 0c00000000000000 0100000000000000"))
    assert decoder((3, 14)).decode(Snapshot(0x7F00, data, (nested, one))) == Items(("nested", 1), 2)


def test_singletons_by_address_and_bias():
    pie = decoder((3, 11), bias=0x7F0000000000, pie=True)
    assert [pie.decode(Snapshot(address + 0x7F0000000000, b"")) for address in (0x959CC0, 0x95A0A0, 0x9479E0)] == [
        None, True, False]
    assert decoder((3, 11)).decode(Snapshot(0x959CC0, b"")) is None


def test_bias_comes_from_the_args_tuple_type():
    symbols = dict(zip(SYMBOL_NAMES, SYMBOLS[(3, 11)]))
    pie = ObjectModel(layout_for((3, 11, 2)), symbols, pie=True)
    assert pie.bias(0x9587E0 + 0x7F12345000) == 0x7F12345000
    assert pie.bias(0x9587E0 + 0x7F12345010) is None  # not page-aligned: not PyTuple_Type (a subclass)
    fixed = ObjectModel(layout_for((3, 11, 2)), symbols, pie=False)
    assert fixed.bias(0x9587E0) == 0 and fixed.bias(0x9587E0 + 0x1000) is None


@pytest.mark.parametrize("version", [(3, 9), (3, 13)])
def test_strings_of_each_kind_and_cut_ones(version):
    str_type = SYMBOLS[version][0]
    decode = decoder(version).decode
    for text in ("", "ascii", "caf\xe9", "\u20acuro", "\U0001f600!"):
        assert decode(Snapshot(1, synthetic_str(version, text, str_type))) == text
    long = synthetic_str(version, "x" * 300, str_type)[:256]  # what the kernel copies of it
    start = layout_for(version).ascii_data
    assert decode(Snapshot(1, long)) == Truncated("x" * (256 - start), 300)
    wide = synthetic_str(version, "\u20ac" * 100, str_type)[:128]
    assert decode(Snapshot(1, wide)) == Truncated("\u20ac" * ((128 - layout_for(version).compact_data) // 2), 100)


def test_legacy_strings_and_short_reads_are_not_guessed():
    str_type = SYMBOLS[(3, 11)][0]
    legacy = bytearray(synthetic_str((3, 11), "abc", str_type))
    legacy[32] &= ~(1 << 5)  # not compact: its characters live elsewhere
    decode = decoder((3, 11), type_name=lambda name, type_address: "never asked").decode
    assert decode(Snapshot(0x10, bytes(legacy))) == Opaque("str", 0x10)
    assert decode(Snapshot(0x10, synthetic_str((3, 11), "abc", str_type)[:32])) == Opaque("str", 0x10)
    assert decode(Snapshot(0x10, b"")) == Unreadable(0x10)


def test_ints_too_long_for_their_snapshot():
    long_type = SYMBOLS[(3, 13)][2]
    data = struct.pack("<qQQ", 1, long_type, 167 << 3 | 2) + b"\x01\0\0\0" * 58  # cut at 256 bytes
    assert decoder((3, 13)).decode(Snapshot(1, data)) == LargeInt(167, negative=True)
    old = struct.pack("<qQq", 1, SYMBOLS[(3, 9)][2], 167) + b"\x01\0\0\0" * 58
    assert decoder((3, 9)).decode(Snapshot(1, old)) == LargeInt(167, negative=False)


def test_unknown_types_are_named_through_their_tp_name():
    asked = []

    def type_name(name, type_address):
        asked.append((name, type_address))
        return "socket"

    data = struct.pack("<qQ", 1, 0x7F0000009000).ljust(64, b"\0")
    named = Snapshot(0x7F0000002000, data, (), type_name=0x7F0000009100)
    assert decoder((3, 11), type_name).decode(named) == Opaque("socket", 0x7F0000002000)
    assert asked == [(0x7F0000009100, 0x7F0000009000)]
    assert decoder((3, 11)).decode(named) == Opaque(None, 0x7F0000002000)  # its name never announced
    assert decoder((3, 11), type_name).decode(Snapshot(0x7F0000002000, data)) == Opaque(None, 0x7F0000002000)


def test_tuples_show_their_length_beyond_the_items_read():
    tuple_type, int_type = SYMBOLS[(3, 11)][4], SYMBOLS[(3, 11)][2]
    one = Snapshot(2, struct.pack("<qQqI", 1, int_type, 1, 1))
    head = struct.pack("<qQq", 1, tuple_type, 10)
    inner = Snapshot(3, struct.pack("<qQq", 1, tuple_type, 3))  # deeper than the kernel goes
    assert decoder((3, 11)).decode(Snapshot(1, head, (one, inner))) == Items((1, Items((), 3)), 10)


def test_unknown_layout_shows_the_args_by_address():
    model = ObjectModel(None, dict(zip(SYMBOL_NAMES, SYMBOLS[(3, 11)])), pie=False)
    decoded = Decoder(model, 0, lambda name, type_address: "never asked").decode_args(Snapshot(0x1234, b"\0" * 96))
    assert decoded == Opaque("tuple", 0x1234)
    assert layout_for((3, 16, 0)) is None and layout_for(None) is None and layout_for((3, 6, 15)) is None


def test_model_of_a_real_binary(host_python, require_tools):
    """This machine's 3.11 (whichever Debian update it is): the addresses its .dynsym holds."""
    require_tools("nm")
    model = object_model(inspect_binary(host_python))
    assert model.layout == layout_for((3, 11)) and not model.pie
    symbols = dynamic_symbols(host_python)
    assert model.symbols == {name: symbols[name] for name in SYMBOL_NAMES}


VALUES = [
    (Items(("text", b"bytes", 42, -7, 2**100, 1.5, None, Items(("nested", 1), 2)), 8),
     "('text', b'bytes', 42, -7, 1267650600228229401496703205376, 1.5, None, ('nested', 1))",
     ["text", {"type": "bytes", "hex": "6279746573"}, 42, -7,
      {"type": "int", "value": "1267650600228229401496703205376"}, 1.5, None, ["nested", 1]]),
    (Items((), 0), "()", []),
    (Items((1,), 1), "(1,)", [1]),
    (Items((1, 2), 5), "(1, 2, …3 more)", {"type": "tuple", "items": [1, 2], "length": 5}),
    (Items((), 3), "(…3 more)", {"type": "tuple", "items": [], "length": 3}),
    (Truncated("ab'c", 300), "\"ab'c\"…(300 chars)", {"type": "str", "value": "ab'c", "truncated": True, "length": 300}),
    (Truncated(b"\0\xff", 400), "b'\\x00\\xff'…(400 bytes)",
     {"type": "bytes", "hex": "00ff", "truncated": True, "length": 400}),
    (LargeInt(167, False), "<int of 167 30-bit digits>", {"type": "int", "truncated": True, "digits": 167, "negative": False}),
    (LargeInt(2, True), "<negative int of 2 30-bit digits>", {"type": "int", "truncated": True, "digits": 2, "negative": True}),
    (Opaque("socket", 0x7F01), "<socket object at 0x7f01>", {"type": "socket", "address": "0x7f01"}),
    (Opaque(None, 0x7F01), "<object at 0x7f01>", {"type": None, "address": "0x7f01"}),
    (Unreadable(0x10), "<unreadable object at 0x10>", {"type": None, "address": "0x10", "unreadable": True}),
    (True, "True", True),
    (float("inf"), "inf", {"type": "float", "value": "inf"}),
    (-0.0, "-0.0", -0.0),
    (2**53, "9007199254740992", 9007199254740992),
    (-(2**53) - 1, "-9007199254740993", {"type": "int", "value": "-9007199254740993"}),
    ("é\n", "'é\\n'", "é\n"),
]


@pytest.mark.parametrize("value, text, json_value", VALUES, ids=[text for _, text, _ in VALUES])
def test_text_and_json(value, text, json_value):
    assert to_text(value) == text
    assert to_json(value) == json_value


def test_free_threaded_builds_have_no_known_layout(host_python, monkeypatch):
    binary = inspect_binary(host_python)
    symbols = dict(zip(SYMBOL_NAMES, SYMBOLS[(3, 11)]))
    monkeypatch.setattr(pyobjects, "_read_symbols", lambda path: {**symbols, "_Py_DecRefShared": 0x1000})
    assert object_model(binary).layout is None
    monkeypatch.setattr(pyobjects, "_read_symbols", lambda path: symbols)
    assert object_model(binary).layout == layout_for((3, 11, 2))
