"""The line table decoders against each interpreter's own answer: every CPython this machine
has compiles the same module and says the line of each instruction (tests/scripts/linetables.py)."""

import json
import subprocess

import pytest

from pybpftrace.linetable import NO_LINE, LineTable
from support import ALL_INTERPRETERS, PYENV_MINORS, TIMEOUT, pyenv_interpreter


def ground_truth(interpreter):
    interpreter.prepare()
    output = subprocess.run(interpreter.command("linetables.py"), capture_output=True, text=True, check=True,
                            timeout=TIMEOUT).stdout
    found = json.loads(output)
    assert tuple(found["version"]) == interpreter.version
    return found["codes"]


def assert_decoded_as_the_interpreter_says(version, codes):
    for code in codes:
        table = LineTable(version, bytes.fromhex(code["table"]), code["first"])
        decoded = [[offset, table.line(offset)] for offset, _ in code["lines"]]
        assert decoded == code["lines"], code["name"]


@pytest.mark.parametrize("interpreter", ALL_INTERPRETERS, ids=str)
def test_the_matrix_interpreters(interpreter):
    codes = ground_truth(interpreter)
    assert {"<module>", "arithmetic", "Handler", "method", "waiter", "far_below"} <= {code["name"] for code in codes}
    assert_decoded_as_the_interpreter_says(interpreter.version, codes)
    if interpreter.version >= (3, 10):  # the module has instructions without a line
        assert any(line == NO_LINE for code in codes for _, line in code["lines"])


@pytest.mark.parametrize("version", PYENV_MINORS, ids=lambda version: f"pyenv-{version[0]}.{version[1]}")
def test_the_pyenv_interpreters(version):
    interpreter = pyenv_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no pyenv build of {version[0]}.{version[1]} on this machine")
    assert_decoded_as_the_interpreter_says(version, ground_truth(interpreter))


def test_a_table_cut_short_answers_only_what_it_holds():
    """The kernel sends at most LINETABLE_MAX bytes of a table: offsets past the cut are
    unknown (None), never another line."""
    codes = ground_truth(ALL_INTERPRETERS[-1])
    far = next(code for code in codes if code["name"] == "far_below")
    table = bytes.fromhex(far["table"])
    whole = LineTable(ALL_INTERPRETERS[-1].version, table, far["first"])
    cut = LineTable(ALL_INTERPRETERS[-1].version, table[: len(table) - 4], far["first"])
    answers = [(whole.line(offset), cut.line(offset)) for offset, _ in far["lines"]]
    assert all(part in (None, line) for line, part in answers)
    assert any(part is None for _, part in answers) and any(part is not None for _, part in answers)
    assert cut.line(1 << 20) is None


@pytest.mark.parametrize("version, table, lines", [
    # 3.9 co_lnotab: 6 bytes at line 10, then +2 lines; then 300 lines on in 127 + 127 + 46
    ((3, 9), bytes([6, 2, 4, 127, 0, 127, 0, 46]), {0: 10, 4: 10, 6: 12, 8: 12, 10: 312, 400: 312}),
    # 3.9: a negative delta (a loop's condition below its body)
    ((3, 9), bytes([4, 3, 2, 0xFE]), {0: 10, 4: 13, 6: 11}),
    # 3.10 co_linetable: 4 bytes at +0, 2 bytes without a line (-128), 2 bytes at +5
    ((3, 10), bytes([4, 0, 2, 0x80, 2, 5]), {0: 10, 2: 10, 4: NO_LINE, 6: 15, 8: None}),
    # 3.11 location table: short form (code 0) 1 unit, no location (15) 2 units, no column (13) +3, one line
    # form (11: +1) 1 unit, long form (14) -2 with end line and columns
    ((3, 11), bytes([0x80, 0x00, 0xF9, 0xE8, 0x06, 0xD8, 0x00, 0x05, 0xF0, 0x05, 0x00, 0x01, 0x02]),
     {0: 10, 2: NO_LINE, 4: NO_LINE, 6: 13, 8: 14, 10: 12, 12: None}),
])
def test_crafted_tables(version, table, lines):
    decoded = LineTable(version, table, 10)
    assert {offset: decoded.line(offset) for offset in lines} == lines
