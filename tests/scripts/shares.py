"""Three functions burning 50, 30 and 20% of the CPU in turns, each timing its own share with
the thread's CPU clock; after `go` on stdin, for the seconds given, then those seconds as JSON."""
import json
import sys
import time

spent = {"func_a": 0.0, "func_b": 0.0, "func_c": 0.0}


def spin(seconds):  # def spin
    end = time.thread_time() + seconds
    while time.thread_time() < end:  # spin loops
        pass


def timed(name, seconds):  # def timed
    start = time.thread_time()
    spin(seconds)
    spent[name] += time.thread_time() - start


def func_a():  # def func_a
    timed("func_a", 0.050)  # func_a calls


def func_b():  # def func_b
    timed("func_b", 0.030)


def func_c():  # def func_c
    timed("func_c", 0.020)


def main(seconds):  # def main
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        func_a()
        func_b()
        func_c()


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    main(float(sys.argv[1]))
    sys.stdout.write(json.dumps(spent) + "\n")
