"""events.py mirrors bpf/events.h: compile the header with gcc and compare every offset."""

import re
import struct
import subprocess

from pybpftrace import events
from pybpftrace.program import bpf_dir
from pybpftrace.tools import audit

LAYOUTS = {
    "call_event": (events.CALL_EVENT, ["timestamp", "code", "pid", "tid", "line", "instruction", "depth", "kind",
                                       "flags", "incarnation"]),
    "line_event": (events.LINE_EVENT, ["timestamp", "file", "function", "pid", "tid", "line", "incarnation"]),
    "names_event": (events.NAMES_EVENT, ["first", "second", "pid", "incarnation", "flags", "first_text",
                                         "second_text"]),
    "fork_event": (events.FORK_EVENT, ["parent", "child"]),
    "process_event": (events.PROCESS_EVENT, ["pid", "parent", "kind", "program"]),
    "audit_event": (audit.AUDIT_EVENT, [
        "timestamp", "objects.tuple", "objects.items", "objects.nested", "objects.tuple_type_name",
        "objects.item_type_names", "objects.nested_type_names", "pid", "tid", "incarnation", "binary", "tuple_read", "items_read",
        "nested_read", "flags", "name", "tuple_bytes", "item_bytes", "nested_bytes",
    ]),
}


def python_offsets(layout: struct.Struct, fields):
    offsets, position = {}, 0
    names = iter(fields)
    for count, code in re.findall(r"(\d*)([a-zA-Z])", layout.format.lstrip("<")):
        size = struct.calcsize(f"<{count}{code}")
        if code != "x":
            offsets[next(names)] = position
        position += size
    return offsets, layout.size


def c_offsets(tmp_path, require_tools, name, fields):
    require_tools("gcc")
    prints = "".join(f'printf("{field} %zu\\n", offsetof(struct {name}, {field}));' for field in fields)
    source = (
        f'#include <stddef.h>\n#include <stdio.h>\n#include "events.h"\n'
        f'int main(void) {{ {prints} printf("size %zu\\n", sizeof(struct {name})); return 0; }}\n'
    )
    (tmp_path / "layout.c").write_text(source)
    subprocess.run(["gcc", f"-I{bpf_dir()}", "-o", tmp_path / "layout", tmp_path / "layout.c"], check=True)
    output = subprocess.run([tmp_path / "layout"], capture_output=True, text=True, check=True).stdout
    values = dict(line.split() for line in output.splitlines())
    size = int(values.pop("size"))
    return {field: int(offset) for field, offset in values.items()}, size


def test_layouts_match_the_header(tmp_path, require_tools):
    for name, (layout, fields) in LAYOUTS.items():
        assert python_offsets(layout, fields) == c_offsets(tmp_path, require_tools, name, fields), name


def test_constants_match_the_header():
    header = (bpf_dir() / "events.h").read_text()
    defined = dict(re.findall(r"\b([A-Z_]+) = (\d+)", header))
    assert int(re.search(r"#define STRING_MAX (\d+)", header).group(1)) == events.STRING_MAX
    assert int(re.search(r"#define PROGRAM_MAX (\d+)", header).group(1)) == events.PROGRAM_MAX
    for name in ("EVENT_CALL", "EVENT_RETURN", "EVENT_CREATED", "PROCESS_TRACED", "PROCESS_EXECED", "PROCESS_FORKED",
                 "PROCESS_BORN", "FIRST_TRUNCATED", "SECOND_TRUNCATED",
                 "FIRST_UNREADABLE", "SECOND_UNREADABLE", *(name for name in dir(events) if name.startswith("COUNTER_"))):
        assert int(defined[name]) == getattr(events, name), name


def test_audit_sizes_match_the_header():
    header = (bpf_dir() / "events.h").read_text()
    defined = dict(re.findall(r"#define (AUDIT_[A-Z_]+) (\d+)", header))
    assert {name: int(value) for name, value in defined.items()} == {
        name: getattr(audit, name) for name in defined
    }
    assert len(defined) == 5


# Records whose tail is an array user space slices by count: their heads, and where the array starts.
HEADS = {
    "sample_event": (events.SAMPLE_HEAD, ["timestamp", "weight", "thread_id", "address", "pid", "tid", "depth", "kind",
                                          "flags", "syscall"], "frames"),
    "code_event": (events.CODE_EVENT_HEAD, ["code", "address", "pid", "firstlineno", "name_length", "file_length",
                                            "linetable_size", "linetable_read", "version", "name_kind", "file_kind",
                                            "flags", "incarnation", "name", "file"], "linetable"),
}


def test_record_heads_match_the_header(tmp_path, require_tools):
    for name, (head, fields, tail) in HEADS.items():
        offsets, _ = python_offsets(head, fields)
        c_fields, _ = c_offsets(tmp_path, require_tools, name, [*fields, tail])
        assert {**offsets, tail: head.size} == c_fields, name
    frame, size = c_offsets(tmp_path, require_tools, "sample_frame", ["code", "instruction"])
    assert (frame, size) == python_offsets(events.SAMPLE_FRAME, ["code", "instruction"])
    fields = ["code", "instruction", "owner"]
    assert c_offsets(tmp_path, require_tools, "sample_frame", fields) == python_offsets(events.TAGGED_SAMPLE_FRAME,
                                                                                        fields)


def test_sample_constants_match_the_header():
    header = (bpf_dir() / "events.h").read_text()
    defined = {**dict(re.findall(r"\b([A-Z_]+) = (\d+)", header)),
               **dict(re.findall(r"#define ([A-Z_]+) (\d+)", header))}
    names = [name for name in vars(events) if name.startswith(("SAMPLE_", "CODE_", "INSTR_", "GENERATOR_")) and name in defined]
    names += ["GIL_SIZE", "GIL_LAST_HOLDER", "GIL_LOCKED", "LINETABLE_MAX", "CODE_TEXT_MAX"]
    assert {name: int(defined[name]) for name in names} == {name: getattr(events, name) for name in names}
    assert len(names) >= 20
