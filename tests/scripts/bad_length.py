"""A process that corrupts the length of its own function's name (a str), as a bug in C code
would, while the function waits: `held_...` as -1, or beyond 32 bits. Lines on stdin: the
first corrupts, the second restores and exits."""
import ctypes
import os
import sys
import threading
import time

NAME = "held_with_a_name_of_its_own"
LENGTH_AT = 16  # PyASCIIObject: the object's header, then its length


def held():  # def held
    while True:
        time.sleep(0.05)


held.__code__ = held.__code__.replace(co_name=NAME)

if __name__ == "__main__":
    threading.Thread(target=held, name="holder", daemon=True).start()
    time.sleep(0.1)
    length = ctypes.c_ssize_t.from_address(id(held.__code__.co_name) + LENGTH_AT)
    original = len(NAME)  # NAME is that very str: not asked again while it is corrupt
    assert length.value == original
    print("ready", flush=True)
    sys.stdin.readline()
    length.value = int(sys.argv[1])
    print("corrupted", flush=True)
    sys.stdin.readline()
    length.value = original
    os._exit(0)
