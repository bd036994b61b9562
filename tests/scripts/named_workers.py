"""Threads that keep calling until stdin ends, for the outputs that label threads: named in
ASCII, UCS-2 and UCS-4, renamed after it started, and one threading never knew. Writes
`ready` once each has called tick(); the main thread then waits on stdin, calling nothing."""
import _thread
import sys
import threading
import time

started = set()


def tick():  # def tick
    time.sleep(0.002)


def loop(role, stop):  # def loop
    started.add(role)
    while not stop.is_set():
        tick()


if __name__ == "__main__":
    stop = threading.Event()
    names = {"ascii": "worker-1", "ucs2": "worker-\u03b1", "ucs4": "snake-\U0001f40d", "renamed": "before"}
    threads = {role: threading.Thread(target=loop, args=(role, stop), name=name) for role, name in names.items()}
    for thread in threads.values():
        thread.start()
    threads["renamed"].name = "renamed"
    _thread.start_new_thread(loop, ("unknown to threading", stop))
    while len(started) < len(names) + 1:
        time.sleep(0.01)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()
    stop.set()
    for thread in threads.values():
        thread.join()
