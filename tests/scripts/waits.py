"""Threads that wait in known ways, each timing its waits: asleep, on a lock another thread holds,
in a socket's recv, and two threads burning CPU (so, each waiting for the GIL about half the
time); after `go` on stdin. Prints, per thread, its TID, the seconds it waited in its blocking
call, the seconds it ran and its CPU time (as its kernel counts it), as JSON."""
import ctypes
import json
import socket
import sys
import threading
import time

ROUNDS = 8
held = threading.Lock()
results = {}


def sleeper():  # def sleeper
    waited = 0.0
    for _ in range(ROUNDS):
        start = time.monotonic()
        time.sleep(0.25)  # sleeper sleeps
        waited += time.monotonic() - start
    return waited


def holder(ready, finished):  # def holder
    for _ in range(ROUNDS):
        with held:
            ready.set()
            time.sleep(0.25)  # holder holds
        ready.clear()
        time.sleep(0.01)
    finished.set()
    ready.set()
    return 0.0


def waiter(ready, finished):  # def waiter
    waited = 0.0
    while not finished.is_set():  # however late it runs, it never waits for a round that will not come
        ready.wait()
        start = time.monotonic()
        with held:  # waiter waits
            waited += time.monotonic() - start
        time.sleep(0.02)
    return waited


def reader(sock):  # def reader
    waited = 0.0
    for _ in range(ROUNDS):
        start = time.monotonic()
        sock.recv(16)  # reader receives
        waited += time.monotonic() - start
    return waited


def writer(sock):  # def writer
    for _ in range(ROUNDS):
        time.sleep(0.25)
        sock.send(b"x")
    return 0.0


def burner():  # def burner
    end = time.monotonic() + ROUNDS * 0.25
    while time.monotonic() < end:  # burner burns
        pass
    return 0.0


def native_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # gettid, x86-64


def run(name, function, args):
    start, start_cpu = time.monotonic(), time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    waited = function(*args)
    results[name] = {"tid": native_id(), "waited": waited, "elapsed": time.monotonic() - start,
                     "cpu": time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID) - start_cpu}


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    ready, finished = threading.Event(), threading.Event()
    left, right = socket.socketpair()
    work = {"sleeper": (sleeper, ()), "holder": (holder, (ready, finished)), "waiter": (waiter, (ready, finished)),
            "reader": (reader, (left,)), "writer": (writer, (right,)), "burner": (burner, ()),
            "burner2": (burner, ())}
    threads = [threading.Thread(target=run, args=(name, function, args)) for name, (function, args) in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.write(json.dumps(results) + "\n")
