"""Calls CPython 3.15 reports oddly: a generator resumed by throw(), and __init__ once
specialized (after enough calls)."""
import contextlib
import sys


@contextlib.contextmanager  # def managed
def managed():
    try:
        yield  # managed yields
    except KeyError:
        pass  # managed catches


class Box:
    def __init__(self, value):  # def init
        self.value = value  # init returns


def throws():  # def throws
    with managed():
        raise KeyError("into the generator")
    return "thrown"  # throws returns


def boxes(count):  # def boxes
    for value in range(count):
        Box(value)
    return count  # boxes returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    throws()
    print(boxes(50))  # module ends
