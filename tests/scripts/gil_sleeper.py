"""A thread asleep in C with the GIL held (libc's sleep through ctypes.PyDLL, which keeps it),
while the main thread, busy in Python, waits for it."""
import ctypes
import sys
import threading

libc = ctypes.PyDLL(None)


def sleeper():
    print(threading.get_native_id(), flush=True)
    libc.sleep(3600)  # sleeper sleeps holding the GIL


if __name__ == "__main__":
    threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
    while True:
        sum(range(1000))  # main spins
