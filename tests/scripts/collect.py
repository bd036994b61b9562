"""Known collections: one of each generation, then a cycle collected by a full collection."""
import gc
import sys


def make_cycle():
    cycle = []
    cycle.append(cycle)


if __name__ == "__main__":
    gc.disable()  # only the collections asked for below
    sys.stdin.readline()  # wait for the tracer
    gc.collect(0)
    gc.collect(1)
    gc.collect(2)
    make_cycle()  # a list that holds itself: one object on every version
    print(gc.collect(2))
