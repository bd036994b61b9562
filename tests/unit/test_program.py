"""Program generation: one reader per distinct spec, one entry point per (probe, spec)."""

import pytest

from pybpftrace.errors import NoProbes
from pybpftrace.probes import ElfProbes, Location, Probe
from pybpftrace import program as program_module
from pybpftrace.program import Handler, ProgramSpec, generate, inline_includes, marker
from pybpftrace.target import EVAL_FRAME, Place, PythonBinary
from pybpftrace.tools.follow import follows_calls

SPEC = ProgramSpec(
    "stack.bpf.c",
    (("function__entry", Handler("on_function_entry", 3)), ("function__return", Handler("on_function_return", 3))),
    code_probes=(marker("_Py_MakeCoro", Handler("on_generator_created", 3)),),
)


def binary(*probes, machine="x86-64", path="/usr/bin/python3", version=(3, 11, 2), places=None):
    elf = ElfProbes(path, machine, False, [
        Probe("python", name, [Location(0x1000 + i, 0x100 + i, args, None) for i, args in enumerate(specs)])
        for name, specs in probes
    ])
    return PythonBinary(path, path, elf, version, True, places or {}, None)


def test_same_spec_shares_a_reader_and_differing_specs_get_their_own():
    target = binary(
        ("function__entry", ["8@%rbp 8@%r12 -4@%eax", "8@%rbx 8@%r12 -4@%eax", "8@%rbp 8@%r12 -4@%eax"]),
        ("function__return", ["8@%rbp 8@%r12 -4@%eax"]),
        ("gc__start", ["-4@%edi"]),  # not this program's
    )
    program = generate(SPEC, [target])
    assert program.source.count("static __always_inline void read_arguments_") == 2
    entries = [placement.entry for placement in program.placements]
    assert entries == ["probe_function__entry_0", "probe_function__entry_1", "probe_function__entry_0",
                       "probe_function__return_2"]
    assert program.source.count("int probe_function__") == 3
    assert "\treturn on_function_return(ctx, args);" in program.source
    assert [p.location.offset for p in program.placements] == [0x100, 0x101, 0x102, 0x100]


def test_aarch64_binary_generates_aarch64_readers():
    program = generate(SPEC, [binary(("function__entry", ["8@x19 8@x20 -4@w0"]), machine="aarch64")])
    assert "args[0] = (__u64)(__u64)(ctx->regs[19]);" in program.source
    assert "args[2] = (__u64)(__s32)((__u32)ctx->regs[0]);" in program.source


def test_unreadable_or_short_specs_are_left_out_with_a_note():
    """One binary's bad notes cost its probes there, not the command (another binary mapped
    by any process could carry them); with nothing else to attach, they are the error."""
    good = binary(("function__entry", ["8@%rbp 8@%r12 -4@%eax"]), path="/good")
    bad = binary(("function__entry", ["8@%xyz 8@%r12 -4@%eax", "8@%rbp 8@%r12"]), path="/bad")
    program = generate(SPEC, [good, bad])
    assert [p.binary.path for p in program.placements] == ["/good"]
    assert program.skipped == ["function__entry at 0x1000 in /bad left out: unknown x86-64 register 'xyz'",
                               "function__entry at 0x1001 in /bad left out: 2 arguments, 3 expected"]
    with pytest.raises(NoProbes, match=r"^function__entry at 0x1000 in /bad left out: unknown x86-64 register 'xyz'$"):
        generate(SPEC, [bad])


def test_includes_are_inlined_once_for_bcc_to_rewrite():
    source = inline_includes("stack.bpf.c")
    assert '#include "' not in source
    assert source.count("#define PYBPFTRACE_EVENTS_H") == 1
    assert "BPF_RINGBUF_OUTPUT(names" in source
    assert source.count("#define PYBPFTRACE_FRAME_EVENTS_H") == 1


def test_markers_are_placed_only_where_the_version_needs_them():
    probes = ("function__entry", ["8@%rbp 8@%r12 -4@%eax"]), ("function__return", ["8@%rbp 8@%r12 -4@%eax"])
    py315 = binary(*probes, version=(3, 15, 2), places={"_Py_MakeCoro": Place(0x5000, 0x405000)}, path="/py315")
    py311 = binary(*probes, places={"_Py_MakeCoro": Place(0x6000, 0x406000)}, path="/py311")  # has it, needs it not
    program = generate(SPEC, [py315, py311])
    markers = [p for p in program.placements if p.entry.startswith("at_Py_MakeCoro")]
    assert [(p.binary.path, p.location.offset) for p in markers] == [("/py315", 0x5000)]
    entry = markers[0].entry
    assert (f"int {entry}(struct pt_regs *ctx)\n{{\n\t__u64 args[3] = {{}};\n\treturn on_generator_created(ctx, args);"
            "\n}") in program.source


def test_calls_follow_the_function_probes_or_the_evaluator_by_binary(monkeypatch):
    """A program that follows calls: each binary by its route, every entry point passing its
    binary's index and the link-time address it probes (the kernel registers processes by it)."""
    monkeypatch.setattr(program_module, "code_place", lambda binary, name: binary.places.get(name))
    probes = ("function__entry", ["8@%rbp 8@%r12 -4@%eax"]), ("function__return", ["8@%rbp 8@%r12 -4@%eax"])
    evaluator = {EVAL_FRAME: Place(0x2004, 0x402004, 0x402000)}
    usdt = binary(*probes, path="/py311", places=evaluator)
    hooked = binary(version=(3, 13, 5), path="/py313", places=evaluator)
    program = generate(follows_calls(ProgramSpec("stack.bpf.c", ())), [usdt, hooked], frozenset({hooked}))
    placed = [(p.binary.path, p.probe or p.entry.split("_")[0], p.returns, p.location.offset) for p in program.placements]
    assert placed == [
        ("/py311", "function__return", False, 0x100), ("/py311", "function__entry", False, 0x100),
        ("/py313", "at", False, 0x2004), ("/py313", "return", True, 0x2004),
    ]
    entry = next(p.entry for p in program.placements if p.binary is hooked and not p.returns)
    assert f"\targs[3] = 0x1ULL;\n\targs[4] = 0x402004ULL;\n\treturn on_eval_frame(ctx, args);" in program.source
    usdt_entry = next(p.entry for p in program.placements if p.probe == "function__entry")
    body = program.source[program.source.index(f"int {usdt_entry}("):]
    assert "\targs[3] = 0x0ULL;\n\targs[4] = 0x1000ULL;\n\treturn on_function_entry(ctx, args);" in body


def test_binary_constants_follow_the_handler_arguments_and_split_entry_points():
    spec = ProgramSpec(
        "stack.bpf.c",
        (("audit", Handler("on_audit", 2)),),
        binary_constants=lambda binary: (7, 24) if binary.path == "/a" else (8, 32),
    )
    # 3 probe arguments: the constants go over the third, which the handler ignores
    first = binary(("audit", ["8@%rbp 8@%r12 8@%r13", "8@%rbp 8@%r12 8@%r13"]), path="/a")
    second = binary(("audit", ["8@%rbp 8@%r12 8@%r13"]), path="/b")  # same spec, other constants
    program = generate(spec, [first, second])
    assert [p.entry for p in program.placements] == ["probe_audit_0", "probe_audit_0", "probe_audit_1"]
    assert program.source.count("static __always_inline void read_arguments_") == 1
    assert (
        "int probe_audit_0(struct pt_regs *ctx)\n{\n\t__u64 args[4] = {};\n\tread_arguments_0(ctx, args);\n"
        "\targs[2] = 0x7ULL;\n\targs[3] = 0x18ULL;\n\treturn on_audit(ctx, args);\n}"
    ) in program.source
    assert "\targs[2] = 0x8ULL;\n\targs[3] = 0x20ULL;\n" in program.source
