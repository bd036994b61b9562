"""A parent with a child forked before tracing and one after, all three busy for a while, each
in a function of its own; then they exit."""
import multiprocessing
import os
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def spin():
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        pass


def early_child(told):
    os.read(told, 1)  # until the parent is told to go
    spin()  # early child spins


def late_child():
    spin()  # late child spins


def parent_spins():
    spin()  # parent spins


if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    told, tell = os.pipe()
    early = context.Process(target=early_child, args=(told,))
    early.start()
    sys.stdin.readline()  # wait for the tracer
    os.write(tell, b".")
    late = context.Process(target=late_child)
    late.start()
    parent_spins()
    early.join()
    late.join()
    print(early.pid, late.pid, flush=True)
