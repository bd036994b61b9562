"""C code that reads USDT arguments out of a uprobe's saved registers: the job of bcc's
bpf_usdt_readarg, generated ahead of time, one reader per distinct argument spec.

Everything emitted here comes from parsed `Argument` values (register fields from a fixed
table, integers formatted by us), never from text found in the traced binary.
"""

from __future__ import annotations

from .argspec import Argument, Constant, Memory, Operand, Register

_UNSIGNED = {1: "__u8", 2: "__u16", 4: "__u32", 8: "__u64"}
_SIGNED = {1: "__s8", 2: "__s16", 4: "__s32", 8: "__s64"}


def _register(register: Register) -> str:
    expression = f"ctx->{register.field}"
    if register.shift:
        expression = f"({expression} >> {register.shift})"
    if register.bits < 64:
        expression = f"({_UNSIGNED[register.bits // 8]}){expression}"
    return expression


def integer_literal(value: int) -> str:
    """A 64-bit C literal of any Python int, two's complement for negatives."""
    return f"0x{value & 0xFFFFFFFFFFFFFFFF:x}ULL"


def _address(memory: Memory) -> str:
    parts = [_register(memory.base)]
    if memory.index is not None:
        parts.append(f"{_register(memory.index)} * {memory.scale}")
    if memory.offset:
        parts.append(integer_literal(memory.offset))
    return " + ".join(parts)


def _widen(expression: str, argument: Argument) -> str:
    """Truncate to the argument's size, then extend to 64 bits by its signedness."""
    table = _SIGNED if argument.signed else _UNSIGNED
    return f"(__u64)({table[argument.size]})({expression})"


def _read_statement(index: int, argument: Argument) -> list[str]:
    operand: Operand = argument.operand
    if isinstance(operand, Constant):
        return [f"args[{index}] = {_widen(integer_literal(operand.value), argument)};"]
    if isinstance(operand, Register):
        return [f"args[{index}] = {_widen(_register(operand), argument)};"]
    value_type = (_SIGNED if argument.signed else _UNSIGNED)[argument.size]
    return [
        "{",
        f"\t{value_type} value = 0;",
        f"\tbpf_probe_read_user(&value, sizeof(value), (void *)({_address(operand)}));",
        f"\targs[{index}] = (__u64)value;",
        "}",
    ]


def reader_function(name: str, arguments: tuple[Argument, ...]) -> str:
    """`static void NAME(struct pt_regs *ctx, __u64 *args)` filling args[0..n-1]."""
    lines = [
        f"static __always_inline void {name}(struct pt_regs *ctx, __u64 *args)",
        "{",
    ]
    for index, argument in enumerate(arguments):
        lines.extend("\t" + line for line in _read_statement(index, argument))
    lines.append("}")
    return "\n".join(lines) + "\n"
