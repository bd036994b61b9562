"""Generated argument readers: exact text for a known spec, and behaviour checked by compiling
the generated C natively against a pt_regs of the same shape, with memory reads done by memcpy,
and running it on known register values (for aarch64 too: the readers are plain C)."""

import shutil
import struct
import subprocess
import textwrap

import pytest

from pybpftrace.argspec import parse_spec
from pybpftrace.readers import reader_function

HARNESS = """
#include <stdint.h>
#include <stdio.h>
#include <string.h>
typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32; typedef uint64_t __u64;
typedef int8_t __s8; typedef int16_t __s16; typedef int32_t __s32; typedef int64_t __s64;
#ifndef __always_inline
#define __always_inline inline
#endif
static long bpf_probe_read_user(void *dst, unsigned size, const void *src)
{
	memcpy(dst, src, size);
	return 0;
}
"""

X86_PT_REGS = """
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
};
"""
A64_PT_REGS = "struct pt_regs { unsigned long regs[31]; unsigned long sp, pc, pstate; };\n"


def run_reader(tmp_path, spec, arch, pt_regs, setup):
    """Compile a reader for spec, run it with registers set by `setup` (C statements that may
    use `memory`, a 64-byte buffer filled with bytes 0x80..0xbf), return the argument values."""
    # a failure, not a skip: make setup installs gcc, and a skip would hide a broken setup
    assert shutil.which("gcc"), "gcc is needed to compile the generated readers: run make setup"
    arguments = parse_spec(spec, arch)
    source = HARNESS + pt_regs + reader_function("read_arguments", arguments) + textwrap.dedent(f"""
        int main(void)
        {{
            unsigned char memory[64];
            for (int i = 0; i < 64; i++) memory[i] = 0x80 + i;
            struct pt_regs regs_, *ctx = &regs_;
            memset(ctx, 0, sizeof(*ctx));
            {setup}
            __u64 args[{len(arguments)}];
            read_arguments(ctx, args);
            for (int i = 0; i < {len(arguments)}; i++) printf("%llx\\n", (unsigned long long)args[i]);
            return 0;
        }}
        """)
    (tmp_path / "reader.c").write_text(source)
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-Wno-unused", "-o", tmp_path / "reader", tmp_path / "reader.c"], check=True)
    output = subprocess.run([tmp_path / "reader"], check=True, capture_output=True, text=True).stdout
    return [int(line, 16) for line in output.split()]


def u64(value):
    return value & 0xFFFFFFFFFFFFFFFF


def memory_value(offset, size, signed):
    raw = bytes(0x80 + i for i in range(64))[offset : offset + size]
    return u64(int.from_bytes(raw, "little", signed=signed))


def test_reader_text_for_cpython_311_entry():
    text = reader_function("read_arguments_0", parse_spec("8@%rbp 8@%r12 -4@%eax", "x86-64"))
    assert text == (
        "static __always_inline void read_arguments_0(struct pt_regs *ctx, __u64 *args)\n"
        "{\n"
        "\targs[0] = (__u64)(__u64)(ctx->bp);\n"
        "\targs[1] = (__u64)(__u64)(ctx->r12);\n"
        "\targs[2] = (__u64)(__s32)((__u32)ctx->ax);\n"
        "}\n"
    )


def test_reader_text_for_a_memory_operand():
    text = reader_function("read_arguments_1", parse_spec("-4@112(%rsp)", "x86-64"))
    assert "\t\t__s32 value = 0;\n" in text
    assert "bpf_probe_read_user(&value, sizeof(value), (void *)(ctx->sp + 0x70ULL));" in text


@pytest.mark.parametrize("arch, pt_regs, base_setup, spec_base", [
    ("x86-64", X86_PT_REGS, "ctx->sp = (unsigned long)memory; ctx->cx = 2;", ("%rsp", "%rcx")),
    ("aarch64", A64_PT_REGS, "ctx->sp = (unsigned long)memory; ctx->regs[2] = 2;", ("sp", "x2")),
])
def test_memory_operands_read_the_right_bytes(tmp_path, arch, pt_regs, base_setup, spec_base):
    base, index = spec_base
    if arch == "x86-64":
        spec = f"-4@16({base}) 8@({base}) 2@8({base},{index},4) -1@({base},{index})"
        expected = [
            memory_value(16, 4, True),
            memory_value(0, 8, False),
            memory_value(8 + 2 * 4, 2, False),
            memory_value(2, 1, True),
        ]
    else:
        spec = f"-4@[{base}, 16] 8@[{base}] 2@[{base}, #8]"
        expected = [memory_value(16, 4, True), memory_value(0, 8, False), memory_value(8, 2, False)]
    assert run_reader(tmp_path, spec, arch, pt_regs, base_setup) == expected


def test_aarch64_registers_sizes_and_signs(tmp_path):
    spec = "-4@x0 8@x0 4@w1 -4@w1 8@sp 8@fp 8@lr -8@#-3 2@#65537"
    setup = """
        ctx->regs[0] = 0x00000001fffffffeUL;
        ctx->regs[1] = 0xaaaaaaaa80000000UL;
        ctx->regs[29] = 29; ctx->regs[30] = 30; ctx->sp = 0x7ffc0000;
    """
    assert run_reader(tmp_path, spec, "aarch64", A64_PT_REGS, setup) == [
        u64(-2),
        0x00000001FFFFFFFE,
        0x80000000,
        u64(-0x80000000),
        0x7FFC0000,
        29,
        30,
        u64(-3),
        1,  # 65537 truncated to 16 bits
    ]


def test_x86_64_values(tmp_path):
    spec = "-4@%eax 8@%rax 4@%eax -1@%ah 1@%al -2@%bx 8@%r12 -8@$-5 4@$7 1@%r13b 2@%ax"
    setup = """
        ctx->ax = 0x11223344ff80fff6UL;
        ctx->bx = 0xfffe;
        ctx->r12 = 0x8000000000000001UL;
        ctx->r13 = 0x1ff;
    """
    assert run_reader(tmp_path, spec, "x86-64", X86_PT_REGS, setup) == [
        u64(struct.unpack("<i", struct.pack("<I", 0xFF80FFF6))[0]),
        0x11223344FF80FFF6,
        0xFF80FFF6,
        u64(-1),  # ah: 0xff
        0xF6,  # al
        u64(-2),
        0x8000000000000001,
        u64(-5),
        7,
        0xFF,
        0xFFF6,
    ]
