"""Known wall-clock time in known functions, for the flame graph weights."""
import sys
import time


def slow():  # def slow
    time.sleep(0.3)


def fast():  # def fast
    time.sleep(0.1)


def main():  # def main
    slow()
    fast()
    fast()


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    main()  # module ends
