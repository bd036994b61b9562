"""The eval-frame route's facts about a binary: where its calls can be probed without function
probes, and what turning the route on takes.

Once `interp->eval_frame` is set (PEP 523), CPython 3.11+ evaluates every call and resumption
through `_PyEval_EvalFrameDefault(tstate, frame, throwflag)`, called through the pointer;
3.7 to 3.10 always do. A uprobe on its entry and a uretprobe see every call and return.
CPython 3.13 has one exception: its specialized class call (CALL_ALLOC_AND_ENTER_INIT) pushes
`__init__`'s frame without checking eval_frame. Its instructions' code is found in the
interpreter's table of instruction addresses (computed gotos), so that the instruction and the
one that ends such an `__init__` (EXIT_INIT_CHECK) can be probed too.
"""

from __future__ import annotations

import functools
import os
import struct
from collections import Counter
from typing import Optional

from .probes import ELF_READ_ERRORS, defined_symbols, file_offset, load_segments, open_elf
from .target import EVAL_FRAME, Place, PythonBinary
from .versions import Version

# The routes by which calls are followed (routes.py).
USDT = "usdt"
EVAL_FRAME_ROUTE = "eval-frame"
ROUTES = (USDT, EVAL_FRAME_ROUTE)
# The versions whose calls skip _PyEval_EvalFrameDefault unless eval_frame is set.
HOOK_FIRST = (3, 11)
# 3.13's instructions by number (Include/opcode_ids.h, the same in every 3.13 release).
OPCODES_313 = {"init_call": 162, "init_return": 13}  # CALL_ALLOC_AND_ENTER_INIT, EXIT_INIT_CHECK
OPCODE_TARGETS = 256
# Where PyInterpreterState keeps what refusing takes (offsetof, Debian's 3.14 and 3.15
# headers; a byte each): the JIT's switch, and config.remote_debug.
INTERP_JIT = {(3, 14): 223184, (3, 15): 223408}
INTERP_REMOTE_DEBUG = {(3, 14): 8076, (3, 15): 8028}
# With the hook set, every call is a C call too: CPython counts it against its C recursion
# limit (3.12, 3.13) or its C stack (3.14). The deepest recursion that then runs, measured
# with sys.setrecursionlimit(100000) on pyenv's 3.12.1 and Debian's 3.13.5 and 3.14.10 (an 8
# MiB stack), against 20,000 untraced; 3.15 is unchanged. And where the interpreter keeps its
# own limit (ceval.recursion_limit, an int: offsetof in each version's headers).
HOOKED_RECURSION = {(3, 12): 748, (3, 13): 4998, (3, 14): 4423}
INTERP_RECURSION_LIMIT = {(3, 12): 376, (3, 13): 8, (3, 14): 8}


def recursion_warning(version: Version, limit: Optional[int]) -> Optional[str]:
    """What the hook changes for a process whose recursion limit is `limit` (None: unread)."""
    ceiling = HOOKED_RECURSION.get(version[:2])
    if ceiling is None or (limit is not None and limit <= ceiling):
        return None
    limit_said = f" (its limit: {limit})" if limit is not None else ""
    return (f"while its eval_frame hook is set, CPython {version[0]}.{version[1]} counts every call against its C "
            f"recursion limit too: recursion deeper than about {ceiling} calls raises RecursionError{limit_said}")


def needs_hook(version: Optional[Version]) -> bool:
    """Whether calls go through _PyEval_EvalFrameDefault only once eval_frame is set."""
    return version is not None and version[:2] >= HOOK_FIRST


def eval_place(binary: PythonBinary) -> Optional[Place]:
    return binary.places.get(EVAL_FRAME)


def code_place(binary: PythonBinary, name: str) -> Optional[Place]:
    """A place the eval-frame route probes in this binary: the evaluator (its entry), or one of
    3.13's instructions (init_call, init_return); None where it has none."""
    if name in OPCODES_313:
        if binary.version is None or binary.version[:2] != (3, 13):
            return None
        stat = os.stat(binary.path)
        return _opcode_places(binary.path, (stat.st_dev, stat.st_ino, stat.st_mtime_ns)).get(name)
    return binary.places.get(name)


@functools.lru_cache(maxsize=16)
def _opcode_places(path: str, identity: tuple) -> dict[str, Place]:
    """3.13's instructions' code, from the evaluator's table of their addresses; {} where the
    table is not found (then those calls are counted as not seen, never guessed)."""
    try:
        with open(path, "rb") as stream:
            elf = open_elf(stream)
            symbols = defined_symbols(elf, (EVAL_FRAME,))
            if EVAL_FRAME not in symbols:
                return {}
            segments = load_segments(elf)
            table = _opcode_table(elf, symbols[EVAL_FRAME])
            if table is None:
                return {}
            return {name: Place(file_offset(table[number], segments), table[number])
                    for name, number in OPCODES_313.items()}
    except (OSError, *ELF_READ_ERRORS):
        return {}


def _opcode_table(elf, evaluator: int) -> Optional[list[int]]:
    """The evaluator's 256 instruction addresses: in the read-only data, a run of exactly 256
    pointers into the code, most into the evaluator itself (its .cold parts and the unknown
    instructions' shared target elsewhere). A shared library keeps the same values for its
    relocations to fill in."""
    text = elf.get_section_by_name(".text")
    size = _symbol_size(elf, EVAL_FRAME)
    if text is None or not size:
        return None
    low, high = text["sh_addr"], text["sh_addr"] + text["sh_size"]
    found = []
    for name in (".rodata", ".data.rel.ro"):
        section = elf.get_section_by_name(name)
        if section is None:
            continue
        data = section.data()
        values = struct.unpack_from(f"<{len(data) // 8}Q", data)
        start = 0
        for index in range(len(values) + 1):
            if index < len(values) and low <= values[index] < high:
                continue
            run = values[start:index]
            if len(run) == OPCODE_TARGETS and sum(evaluator <= v < evaluator + size for v in run) > OPCODE_TARGETS // 2:
                found.append(list(run))
            start = index + 1
    if len(found) != 1:
        return None
    table = found[0]
    unknown = Counter(table).most_common(1)[0][0]  # the target of every instruction that does not exist
    if any(table[number] == unknown for number in OPCODES_313.values()):
        return None
    return table


def _symbol_size(elf, name: str) -> int:
    section = elf.get_section_by_name(".dynsym")
    for symbol in section.iter_symbols() if section else ():
        if symbol.name == name:
            return symbol["st_size"]
    return 0
