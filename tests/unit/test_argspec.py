import pytest

from pybpftrace.argspec import (
    ArgSpecError,
    Argument,
    Constant,
    Memory,
    Register,
    format_operand,
    parse_spec,
)


def x86(name):
    return parse_spec(f"8@%{name}", "x86-64")[0].operand


def a64(name):
    return parse_spec(f"8@{name}", "aarch64")[0].operand


@pytest.mark.parametrize(
    "name, field, bits, shift",
    [
        ("rax", "ax", 64, 0),
        ("eax", "ax", 32, 0),
        ("ax", "ax", 16, 0),
        ("al", "ax", 8, 0),
        ("ah", "ax", 8, 8),
        ("rbx", "bx", 64, 0),
        ("dl", "dx", 8, 0),
        ("ch", "cx", 8, 8),
        ("rsi", "si", 64, 0),
        ("esi", "si", 32, 0),
        ("si", "si", 16, 0),
        ("sil", "si", 8, 0),
        ("rdi", "di", 64, 0),
        ("dil", "di", 8, 0),
        ("rbp", "bp", 64, 0),
        ("ebp", "bp", 32, 0),
        ("bpl", "bp", 8, 0),
        ("rsp", "sp", 64, 0),
        ("spl", "sp", 8, 0),
        ("r8", "r8", 64, 0),
        ("r9d", "r9", 32, 0),
        ("r12w", "r12", 16, 0),
        ("r15b", "r15", 8, 0),
        ("r14l", "r14", 8, 0),
    ],
)
def test_x86_64_registers_of_every_width(name, field, bits, shift):
    assert x86(name) == Register(name, field, bits, shift)


def test_cpython_311_function_entry_spec():
    assert parse_spec("8@%rbp 8@%r12 -4@%eax", "x86-64") == (
        Argument(8, False, Register("rbp", "bp")),
        Argument(8, False, Register("r12", "r12")),
        Argument(4, True, Register("eax", "ax", 32)),
    )


@pytest.mark.parametrize(
    "spec, operand",
    [
        ("-4@112(%rsp)", Memory(Register("rsp", "sp"), 112)),
        ("-4@-20(%rbp)", Memory(Register("rbp", "bp"), -20)),
        ("8@(%rax)", Memory(Register("rax", "ax"), 0)),
        ("8@0x10(%r13)", Memory(Register("r13", "r13"), 16)),
        ("1@-96(%rbp,%rax,8)", Memory(Register("rbp", "bp"), -96, Register("rax", "ax"), 8)),
        ("1@(%rbp,%rax)", Memory(Register("rbp", "bp"), 0, Register("rax", "ax"), 1)),
        ("4@-4(%rdx,%ecx,4)", Memory(Register("rdx", "dx"), -4, Register("ecx", "cx", 32), 4)),
        ("-8@$-1", Constant(-1)),
        ("4@$42", Constant(42)),
        ("8@$0x7f", Constant(127)),
    ],
)
def test_x86_64_memory_and_constant_operands(spec, operand):
    assert parse_spec(spec, "x86-64")[0].operand == operand


@pytest.mark.parametrize(
    "spec, size, signed",
    [("1@%al", 1, False), ("-1@%al", 1, True), ("2@%ax", 2, False), ("-2@%ax", 2, True),
     ("4@%eax", 4, False), ("-4@%eax", 4, True), ("8@%rax", 8, False), ("-8@%rax", 8, True)],
)
def test_sizes_and_signedness(spec, size, signed):
    argument = parse_spec(spec, "x86-64")[0]
    assert (argument.size, argument.signed) == (size, signed)


def test_an_argument_without_size_is_64_bits():
    assert parse_spec("%rdi", "x86-64") == (Argument(8, False, Register("rdi", "di")),)


def test_empty_spec_has_no_arguments():
    assert parse_spec("", "x86-64") == ()
    assert parse_spec("  ", "aarch64") == ()


@pytest.mark.parametrize(
    "spec, operand",
    [
        ("x0", Register("x0", "regs[0]")),
        ("x30", Register("x30", "regs[30]")),
        ("w1", Register("w1", "regs[1]", 32)),
        ("sp", Register("sp", "sp")),
        ("fp", Register("fp", "regs[29]")),
        ("lr", Register("lr", "regs[30]")),
        ("[sp, 8]", Memory(Register("sp", "sp"), 8)),
        ("[sp,8]", Memory(Register("sp", "sp"), 8)),
        ("[x19, -16]", Memory(Register("x19", "regs[19]"), -16)),
        ("[x2, #24]", Memory(Register("x2", "regs[2]"), 24)),
        ("[x3]", Memory(Register("x3", "regs[3]"), 0)),
        ("#5", Constant(5)),
        ("#-3", Constant(-3)),
        ("7", Constant(7)),
    ],
)
def test_aarch64_operands(spec, operand):
    assert a64(spec) == operand


def test_aarch64_whole_spec_with_spaces_inside_brackets():
    assert parse_spec("-4@x0 8@[sp, 96] -8@#1 4@w3", "aarch64") == (
        Argument(4, True, Register("x0", "regs[0]")),
        Argument(8, False, Memory(Register("sp", "sp"), 96)),
        Argument(8, True, Constant(1)),
        Argument(4, False, Register("w3", "regs[3]", 32)),
    )


@pytest.mark.parametrize(
    "spec, arch, message",
    [
        ("8@%foo", "x86-64", "unknown x86-64 register 'foo'"),
        ("3@%eax", "x86-64", "argument size 3"),
        ("8@sym(%rip)", "x86-64", "cannot parse"),
        ("8@8(%rip)", "x86-64", "%rip-relative"),
        ("8@%fs:8", "x86-64", "cannot parse"),
        ("8@x31", "aarch64", "unknown aarch64 register 'x31'"),
        ("8@[q0, 8]", "aarch64", "unknown aarch64 register 'q0'"),
        ("8@%rax", "riscv", "riscv are not supported"),
    ],
)
def test_unreadable_specs_are_refused_with_the_reason(spec, arch, message):
    with pytest.raises(ArgSpecError, match=message.replace("(", r"\(").replace("%", "%")):
        parse_spec(spec, arch)


def test_format_operand_for_listings():
    memory, index = parse_spec("8@-8(%rbp,%rax,8) 8@$3 -4@%eax", "x86-64")[0:2]
    assert format_operand(memory.operand) == "memory [rbp + rax*8 - 8]"
    assert format_operand(index.operand) == "constant 3"
    assert format_operand(parse_spec("4@%eax", "x86-64")[0].operand) == "register eax"
