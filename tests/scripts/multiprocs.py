"""A multiprocessing parent and two children (forked), each sleeping in a function of its own."""
import multiprocessing
import os
import sys
import time


def child_sleeps(ready):
    os.write(ready, b".")
    time.sleep(3600)  # child sleeps


if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    readable, ready = os.pipe()  # no Queue: a chroot without /dev/shm has no semaphores
    children = [context.Process(target=child_sleeps, args=(ready,), daemon=True) for _ in range(2)]
    for child in children:
        child.start()  # parent starts
    for _ in children:
        os.read(readable, 1)
    print(" ".join(str(child.pid) for child in children), flush=True)
    sys.stdin.readline()  # parent waits
