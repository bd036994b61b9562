"""Locals whose objects were damaged (ctypes): one whose type pointer leads nowhere, a list
that says it is far longer than its array, a list that holds itself; then it sleeps."""
import ctypes
import gc
import sys
import time

gc.disable()  # the collector would follow the damaged objects: this process must not touch them


class Thing:
    pass


def damaged():
    broken = Thing()
    ctypes.c_void_p.from_address(id(broken) + 8).value = 0xDEAD0000  # ob_type: unmapped
    lying = [1, 2]
    ctypes.c_ssize_t.from_address(id(lying) + 16).value = 10**9  # ob_size
    looped = []
    looped.append(looped)
    print(hex(id(broken)), hex(id(lying)), flush=True)
    time.sleep(3600)  # sleeps


if __name__ == "__main__":
    damaged()
