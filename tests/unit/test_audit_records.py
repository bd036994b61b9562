"""struct audit_event records, as the ring buffer hands them over, turned into snapshot trees."""

import re

from pybpftrace.events import FIRST_TRUNCATED, FIRST_UNREADABLE
from pybpftrace.program import bpf_dir
from pybpftrace.pyobjects import Snapshot
from pybpftrace.target import inspect_binary
from pybpftrace.tools import audit


def record(name=b"socket.connect", flags=0, items=(), nested=None):
    """A packed-then-unpacked record: items are (address, type name address, bytes); nested
    maps an item's index to its tuple's items."""
    n, inner = audit.AUDIT_ITEMS, audit.AUDIT_NESTED
    addresses, names, reads, data = [0] * n, [0] * n, [0] * n, bytearray(n * audit.AUDIT_ITEM_BYTES)
    nested_addresses, nested_names, nested_reads = [0] * (n * inner), [0] * (n * inner), [0] * (n * inner)
    nested_data = bytearray(n * inner * audit.AUDIT_NESTED_BYTES)
    for index, (address, type_name, content) in enumerate(items):
        addresses[index], names[index], reads[index] = address, type_name, len(content)
        data[index * audit.AUDIT_ITEM_BYTES : index * audit.AUDIT_ITEM_BYTES + len(content)] = content
    for index, children in (nested or {}).items():
        for position, (address, type_name, content) in enumerate(children):
            slot = index * inner + position
            nested_addresses[slot], nested_names[slot], nested_reads[slot] = address, type_name, len(content)
            start = slot * audit.AUDIT_NESTED_BYTES
            nested_data[start : start + len(content)] = content
    data[len(items) * audit.AUDIT_ITEM_BYTES : len(items) * audit.AUDIT_ITEM_BYTES + 8] = b"leftover"  # not read
    packed = audit.AUDIT_EVENT.pack(
        123, 0x7000, *addresses, *nested_addresses, 0x7001, *names, *nested_names,
        42, 43, 7, 1, 24, *reads, *nested_reads, flags, name, b"T" * 24, bytes(data), bytes(nested_data),
    )
    return audit.AUDIT_EVENT.unpack(packed)


def test_record_becomes_a_snapshot_tree():
    event = audit.parse_record(record(
        items=[(0x100, 0x101, b"socket object"), (0x200, 0x201, b"address tuple")],
        nested={1: [(0x300, 0x301, b"10.99.0.1"), (0x400, 0x401, b"8080")]},
    ))
    assert (event.timestamp, event.pid, event.tid, event.incarnation, event.binary, event.name) == (
        123, 42, 43, 7, 1, "socket.connect")
    assert event.args == Snapshot(0x7000, b"T" * 24, (
        Snapshot(0x100, b"socket object", (), 0x101),
        Snapshot(0x200, b"address tuple", (Snapshot(0x300, b"10.99.0.1", (), 0x301), Snapshot(0x400, b"8080", (), 0x401)), 0x201),
    ), 0x7001)


def test_names_cut_or_unreadable():
    assert audit.parse_record(record(name=b"x" * 255, flags=FIRST_TRUNCATED)).name == "x" * 255 + "…"
    assert audit.parse_record(record(name=b"", flags=FIRST_UNREADABLE)).name == "<unreadable>"


def test_patterns_fit_the_program():
    source = (bpf_dir() / "audit.bpf.c").read_text()
    assert int(re.search(r"#define GLOBS_MAX (\d+)", source).group(1)) == audit.GLOBS_MAX


def test_a_file_is_numbered_once_whatever_the_path(host_python):
    binaries = audit.Binaries()
    direct = binaries.constants(inspect_binary(host_python))
    through_proc = binaries.constants(inspect_binary(f"/proc/self/root{host_python}"))
    assert direct == through_proc == (0, 8, 16, 24, 24)  # number; ob_type, ob_size, items, tp_name
    assert len(binaries.models) == 1
