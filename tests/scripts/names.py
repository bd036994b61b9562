"""Names pybpftrace must survive: one too long for its buffer, ones CPython cannot encode.
CPython 3.11 leaves the encoding error set when its probes cannot encode a name (a CPython bug
that surfaces later as a SystemError), so the script ends right after its one call."""
import os
import sys


def make(name, filename="names-test.py"):
    def function():
        return 1
    function.__code__ = function.__code__.replace(co_name=name, co_filename=filename)
    return function


FUNCTIONS = {
    "long": make("f" * 300),
    "function": make("bad\udcff"),
    "file": make("in_bad_file", "bad\udcff.py"),
}

if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    try:
        result = FUNCTIONS[sys.argv[1]]()
    except BaseException as error:
        result = type(error).__name__
    os.write(1, f"{result}\n".encode())
    os._exit(0)
