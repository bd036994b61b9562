"""USDT argument specs: the `8@%rbp -4@112(%rsp)` strings of a stapsdt note, parsed per architecture.

Each argument is `SIZE@OPERAND`: SIZE is 1, 2, 4 or 8 bytes, negative when the value is signed.
The operand is in the assembler syntax of the architecture that built the probe: AT&T on x86-64
(`%eax`, `-20(%rbp)`, `(%rax,%rdx,8)`, `$5`), GNU A64 on aarch64 (`x0`, `w1`, `[sp, 8]`, `#5`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union


class ArgSpecError(ValueError):
    """An argument spec this tracer cannot read (unknown register, odd size, bad syntax)."""


@dataclass(frozen=True)
class Register:
    """Part of a saved register: `field` names the pt_regs member, the value is
    (field >> shift) truncated to `bits`."""

    name: str
    field: str
    bits: int = 64
    shift: int = 0


@dataclass(frozen=True)
class Constant:
    value: int


@dataclass(frozen=True)
class Memory:
    """The value stored at base + index * scale + offset in the target's memory."""

    base: Register
    offset: int = 0
    index: Union[Register, None] = None
    scale: int = 1


Operand = Union[Register, Constant, Memory]


@dataclass(frozen=True)
class Argument:
    size: int  # bytes: 1, 2, 4 or 8
    signed: bool
    operand: Operand


SIZES = (1, 2, 4, 8)


def _x86_64_registers() -> dict[str, Register]:
    """Every name of every general register, 64-bit down to 8-bit, built from the naming rules."""
    table: dict[str, Register] = {}

    def add(name: str, field: str, bits: int, shift: int = 0) -> None:
        table[name] = Register(name, field, bits, shift)

    for letter in "abcd":  # rax, eax, ax, al, ah
        field = letter + "x"
        add(f"r{letter}x", field, 64)
        add(f"e{letter}x", field, 32)
        add(f"{letter}x", field, 16)
        add(f"{letter}l", field, 8)
        add(f"{letter}h", field, 8, 8)
    for base in ("si", "di", "bp", "sp"):  # rsi, esi, si, sil
        add(f"r{base}", base, 64)
        add(f"e{base}", base, 32)
        add(base, base, 16)
        add(f"{base}l", base, 8)
    for number in range(8, 16):  # r8, r8d, r8w, r8b (and the r8l alias)
        field = f"r{number}"
        add(field, field, 64)
        add(f"{field}d", field, 32)
        add(f"{field}w", field, 16)
        add(f"{field}b", field, 8)
        add(f"{field}l", field, 8)
    add("rip", "ip", 64)
    return table


def _aarch64_registers() -> dict[str, Register]:
    table: dict[str, Register] = {}
    for number in range(31):
        field = f"regs[{number}]"
        table[f"x{number}"] = Register(f"x{number}", field, 64)
        table[f"w{number}"] = Register(f"w{number}", field, 32)
    table["fp"] = Register("fp", "regs[29]", 64)
    table["lr"] = Register("lr", "regs[30]", 64)
    table["sp"] = Register("sp", "sp", 64)
    table["wsp"] = Register("wsp", "sp", 32)
    table["pc"] = Register("pc", "pc", 64)
    return table


_NUMBER = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_X86_REG = r"%([a-z][a-z0-9]*)"
_X86_CONSTANT = re.compile(rf"\$({_NUMBER})")
_X86_REGISTER = re.compile(_X86_REG)
_X86_MEMORY = re.compile(
    rf"({_NUMBER})?\(\s*{_X86_REG}\s*(?:,\s*{_X86_REG}\s*(?:,\s*([1248])\s*)?)?\)"
)
_A64_CONSTANT = re.compile(rf"#?({_NUMBER})")
_A64_REGISTER = re.compile(r"([a-z][a-z0-9]*)")
_A64_MEMORY = re.compile(rf"\[\s*([a-z][a-z0-9]*)\s*(?:,\s*#?({_NUMBER})\s*)?\]")


class Architecture:
    """How one architecture writes operands, and its register file."""

    def __init__(self, name: str, registers: dict[str, Register]):
        self.name = name
        self.registers = registers

    def register(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise ArgSpecError(f"unknown {self.name} register {name!r}") from None

    def operand(self, text: str) -> Operand:
        raise NotImplementedError


class X86_64(Architecture):
    def __init__(self) -> None:
        super().__init__("x86-64", _x86_64_registers())

    def operand(self, text: str) -> Operand:
        if match := _X86_CONSTANT.fullmatch(text):
            return Constant(int(match.group(1), 0))
        if match := _X86_REGISTER.fullmatch(text):
            return self.register(match.group(1))
        if match := _X86_MEMORY.fullmatch(text):
            offset, base, index, scale = match.groups()
            if base == "rip":
                # %rip-relative operands name a symbol whose address needs relocating: not supported.
                raise ArgSpecError(f"%rip-relative operand {text!r} is not supported")
            return Memory(
                base=self.register(base),
                offset=int(offset, 0) if offset else 0,
                index=self.register(index) if index else None,
                scale=int(scale) if scale else 1,
            )
        raise ArgSpecError(f"cannot parse x86-64 operand {text!r}")


class AArch64(Architecture):
    def __init__(self) -> None:
        super().__init__("aarch64", _aarch64_registers())

    def operand(self, text: str) -> Operand:
        if match := _A64_MEMORY.fullmatch(text):
            base, offset = match.groups()
            return Memory(base=self.register(base), offset=int(offset, 0) if offset else 0)
        if match := _A64_CONSTANT.fullmatch(text):
            return Constant(int(match.group(1), 0))
        if match := _A64_REGISTER.fullmatch(text):
            return self.register(match.group(1))
        raise ArgSpecError(f"cannot parse aarch64 operand {text!r}")


ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (X86_64(), AArch64())}

# One argument: an optional size (old notes omit it, meaning a 64-bit value), then the operand,
# which on aarch64 may hold a space inside brackets ("[sp, 8]").
_ARGUMENT = re.compile(r"\s*(?:(-?\d+)@)?(\[[^\]]*\]|\S+)")


def parse_spec(spec: str, arch: str) -> tuple[Argument, ...]:
    """Parse a whole argument string, e.g. `8@%rbp 8@%r12 -4@%eax`."""
    try:
        architecture = ARCHITECTURES[arch]
    except KeyError:
        raise ArgSpecError(f"argument specs of {arch} are not supported") from None
    arguments = []
    position = 0
    spec = spec.rstrip()
    while position < len(spec):
        match = _ARGUMENT.match(spec, position)
        if not match:
            raise ArgSpecError(f"cannot parse argument spec {spec!r}")
        size_text, operand_text = match.groups()
        size = int(size_text) if size_text else 8
        if abs(size) not in SIZES:
            raise ArgSpecError(f"argument size {size} in {spec!r} is not 1, 2, 4 or 8")
        operand = architecture.operand(operand_text)
        arguments.append(Argument(size=abs(size), signed=size < 0, operand=operand))
        position = match.end()
    return tuple(arguments)


def format_operand(operand: Operand) -> str:
    """A short architecture-neutral description, for listings."""
    if isinstance(operand, Constant):
        return f"constant {operand.value}"
    if isinstance(operand, Register):
        return f"register {operand.name}"
    address = operand.base.name
    if operand.index is not None:
        address += f" + {operand.index.name}*{operand.scale}"
    if operand.offset:
        address += f" {'+' if operand.offset > 0 else '-'} {abs(operand.offset)}"
    return f"memory [{address}]"
