"""Checks, in this very process, where a frame tells the generator owning it (the walker's
layout for --async): argv: the kind (1: a pointer in the frame, f_gen; 2: the frame embedded
in the generator, gi_iframe), the offset, and for kind 2 where the frame keeps its code object
and its owner. Prints one line per check: `name ok` or `name BAD`."""
import ctypes
import sys

kind, offset, code_at, owner_at = map(int, sys.argv[1:])


def pointer(address):
    return ctypes.c_uint64.from_address(address).value


def generator():
    yield 1


async def coroutine(box):
    frame = sys._getframe()
    box["f_gen"] = pointer(id(frame) + offset) if kind == 1 else None


def check(name, good):
    print(f"{name} {'ok' if good else 'BAD'}")


if kind == 1:
    running = generator()
    next(running)
    check("generator", pointer(id(running.gi_frame) + offset) == id(running))
    check("function", pointer(id(sys._getframe()) + offset) == 0)
    box = {}
    task = coroutine(box)
    try:
        task.send(None)
    except StopIteration:
        pass
    check("coroutine", box["f_gen"] == id(task))
else:
    for made in (generator(), coroutine({})):
        code = made.gi_code if hasattr(made, "gi_code") else made.cr_code
        frame = id(made) + offset
        check(type(made).__name__, pointer(frame + code_at) & ~3 == id(code)
              and ctypes.c_uint8.from_address(frame + owner_at).value == 1)
        if hasattr(made, "close"):
            made.close()
