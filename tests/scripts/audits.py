"""sys.audit events with arguments of every kind pybpftrace decodes; then it waits for a line
on stdin, so that a test can stop the tracer while it still runs."""
import sys


class Custom:
    pass


def main():
    sys.stdin.readline()  # wait for the tracer
    sys.audit("pybpftrace.test", "text", b"bytes", 42, -7, 2**100, 1.5, None, ("nested", 1))
    sys.audit("pybpftrace.strings", "", "café", "€uro", "😀!", "x" * 300, b"", b"\x00\xff" * 200, ("ü", "€"))
    sys.audit("pybpftrace.numbers", 0, -(2**100), 2**30, True, False, 2**5000, float("inf"), -0.0, 7)
    sys.audit("pybpftrace.tuples", (), (1,), (1, 2, 3, 4, 5, 6), ((1, 2), "deep"), 1, 2, 3, 4, 5, 6)
    sys.audit("pybpftrace.objects", [1, 2], Custom(), sys.stdin, str)
    sys.audit("pybpftrace." + "n" * 300)
    sys.audit("pybpftrace.last")
    print("done", flush=True)
    sys.stdin.readline()


main()
