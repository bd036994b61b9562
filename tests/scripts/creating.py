"""Makes objects in a loop (a specialized class call each, on 3.13+: CALL_ALLOC_AND_ENTER_INIT)
from `ready` on, until its stdin ends."""
import sys
import threading


class Point:
    def __init__(self, x):  # def __init__
        self.x = x


def make(count):  # def make
    return [Point(index) for index in range(count)]


if __name__ == "__main__":
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    while not done.is_set():
        make(100)
