"""Prints, as JSON, every code object of a sample module compiled by the interpreter running
this: its first line, its line table as stored, and the line of each instruction as the
interpreter itself says (the ground truth pybpftrace's line table decoders are checked against).
Runs on CPython 3.6 to 3.15."""

import dis
import json
import sys
import types

SOURCE = '''
import os
def arithmetic(a, b):
    x = a + b
    if x > 3:
        return [i for i in range(x)]
    y = (a *
         b)
    return y

class Handler:
    def method(self):
        try:
            return 1 / 0
        except ZeroDivisionError:
            return 2
        finally:
            pass

async def waiter(queue):
    async for item in queue:
        await item
''' + "\n" * 300 + '''
def far_below():
    total = 0
    for i in range(10):
        total += i
''' + "\n" * 70000 + '''
    return total
'''


def codes(code):
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            for inner in codes(constant):
                yield inner


def instruction_lines(code):
    """(byte offset, line or -1 where the instruction has none) of each 2-byte unit."""
    if sys.version_info >= (3, 10):
        return [[offset, -1 if line is None else line]
                for start, end, line in code.co_lines() for offset in range(start, end, 2)]
    starts = dict(dis.findlinestarts(code))
    pairs, line = [], None
    for offset in range(0, len(code.co_code), 2):
        line = starts.get(offset, line)
        pairs.append([offset, line])
    return pairs


def main():
    found = []
    for code in codes(compile(SOURCE, "sample.py", "exec")):
        table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
        found.append({"name": code.co_name, "first": code.co_firstlineno, "table": table.hex(),
                      "lines": instruction_lines(code)})
    print(json.dumps({"version": list(sys.version_info[:2]), "codes": found}))


main()
