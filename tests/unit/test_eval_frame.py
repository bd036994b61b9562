"""The eval-frame route's pure parts: finding CPython 3.13's table of instruction addresses in
an ELF file's read-only data, and the recursion warning the hook calls for."""

import struct

import pytest

from pybpftrace.eval_frame import OPCODES_313, _opcode_table, recursion_warning

TEXT, TEXT_SIZE = 0x10000, 0x100000
EVALUATOR, EVALUATOR_SIZE = 0x40000, 0x8000
UNKNOWN = 0x41000  # where every instruction that does not exist goes


class Section(dict):
    def __init__(self, data: bytes = b"", **fields):
        super().__init__(fields)
        self._data = data

    def data(self) -> bytes:
        return self._data


class Symbol(dict):
    def __init__(self, name: str, size: int):
        super().__init__(st_size=size)
        self.name = name


class Elf:
    """What _opcode_table reads of an ELF file: .text's bounds, the evaluator's size in
    .dynsym, and the read-only data."""

    def __init__(self, rodata: bytes, relro: bytes = b""):
        self._sections = {
            ".text": Section(sh_addr=TEXT, sh_size=TEXT_SIZE),
            ".rodata": Section(rodata),
            ".data.rel.ro": Section(relro),
        }

    def get_section_by_name(self, name):
        if name == ".dynsym":
            return Symbols()
        return self._sections.get(name)


class Symbols:
    def iter_symbols(self):
        return [Symbol("PyEval_EvalCode", 0x100), Symbol("_PyEval_EvalFrameDefault", EVALUATOR_SIZE)]


def table(count: int = 256) -> list[int]:
    """Instruction addresses as the evaluator's computed gotos hold them: most in the
    evaluator, the unknown ones all at one place, a few in its .cold part elsewhere."""
    addresses = [UNKNOWN] * count
    for number in range(min(count, 220)):
        addresses[number] = EVALUATOR + 0x10 * number
    addresses[:3] = [0x90000, 0x90010, 0x90020]  # .cold, still in .text
    return addresses


def words(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def test_the_run_of_256_code_addresses_is_the_table():
    found = table()
    # other pointers into .text around it (a shorter jump table), and data that is not code
    rodata = words(1, 2, *[EVALUATOR] * 40, 7) + words(*found) + words(0, TEXT - 8)
    assert _opcode_table(Elf(rodata), EVALUATOR) == found
    assert _opcode_table(Elf(b"", relro=rodata), EVALUATOR) == found  # a shared library's


@pytest.mark.parametrize("rodata", [
    words(*table(255)),  # too short
    words(*table(257)),  # too long: one run, not the table
    words(*table(), 0, *table()),  # two candidates: which one, unknown
    words(*[0x90000] * 256),  # none into the evaluator
], ids=["255", "257", "two", "elsewhere"])
def test_anything_else_is_no_table(rodata):
    assert _opcode_table(Elf(rodata), EVALUATOR) is None


def test_a_table_where_the_probed_instructions_do_not_exist_is_not_used():
    """A build whose instruction numbers differ: the instructions probed would be the unknown one."""
    found = table()
    found[OPCODES_313["init_call"]] = UNKNOWN
    assert _opcode_table(Elf(words(*found)), EVALUATOR) is None


def test_recursion_warning():
    assert recursion_warning((3, 12, 1), 1000) == (
        "while its eval_frame hook is set, CPython 3.12 counts every call against its C recursion limit too: "
        "recursion deeper than about 748 calls raises RecursionError (its limit: 1000)"
    )
    assert recursion_warning((3, 13, 5), None).endswith("about 4998 calls raises RecursionError")
    assert recursion_warning((3, 13, 5), 1000) is None  # the limit comes first
    assert recursion_warning((3, 15, 0), 100000) is None  # 3.15's evaluator does not count hooked calls
