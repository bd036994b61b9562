"""Collections from known places: first() asks for one of generation 0, second() for one of
generation 1, three times each; then allocate() makes cycles until the collector runs by
itself at least three times, and prints how many collections it saw."""
import gc
import sys

seen = []


def first():  # def first
    gc.collect(0)  # first collects


def second():  # def second
    gc.collect(1)  # second collects


def allocate():  # def allocate
    while len(seen) < 3:
        cycle = []  # allocate allocates
        cycle.append(cycle)


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    for _ in range(3):
        first()
        second()
    gc.callbacks.append(lambda phase, info: seen.append(info) if phase == "stop" else None)
    gc.set_threshold(100)
    allocate()
    gc.disable()
    print(len(seen))
