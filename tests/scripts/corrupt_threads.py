"""A process that corrupts its own thread-state list while its threads sleep, as a bug in C
code would: `loop` links the last state back to the first, `garbage` points the first at
memory that is not mapped; `interpreters OFFSET` links its interpreter to itself (OFFSET: of
the interpreter's next). Lines on stdin: the first corrupts, the second restores and exits."""
import ctypes
import os
import sys
import threading
import time

api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
api.PyThreadState_Next.restype = ctypes.c_void_p
api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
UNMAPPED = 0xDEAD0000


def held():  # def held
    while True:
        time.sleep(0.05)


def states() -> list[int]:
    state, found = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get()), []
    while state:
        found.append(state)
        state = api.PyThreadState_Next(state)
    return found


def next_field(state: int, following: int) -> int:
    """The address of state->next: the pointer-sized word of the state that holds following."""
    for offset in range(0, 64, 8):
        if ctypes.c_void_p.from_address(state + offset).value == following:
            return state + offset
    raise SystemExit("no next pointer found")


if __name__ == "__main__":
    for number in range(3):
        threading.Thread(target=held, name=f"held-{number}", daemon=True).start()
    time.sleep(0.2)
    found = states()
    first, last = found[0], found[-1]
    if sys.argv[1] == "loop":
        offset = next_field(found[-2], last) - found[-2]  # found[-2]->next is last
        field, value = last + offset, first  # last->next = first
    elif sys.argv[1] == "garbage":
        field, value = next_field(first, found[1]), UNMAPPED  # first->next leads nowhere
    else:
        interpreter = api.PyInterpreterState_Get()
        field, value = interpreter + int(sys.argv[2]), interpreter  # its next is itself
    print("ready", len(found), flush=True)
    sys.stdin.readline()
    original = ctypes.c_void_p.from_address(field).value
    ctypes.c_void_p.from_address(field).value = value
    print("corrupted", flush=True)
    sys.stdin.readline()
    ctypes.c_void_p.from_address(field).value = original
    os._exit(0)
