"""`block`: stops inside outer() and inner(), to be killed there; `run`: calls fresh()."""
import sys


def inner():  # def inner
    sys.stdout.write("blocked\n")
    sys.stdout.flush()
    sys.stdin.readline()


def outer():  # def outer
    inner()


def fresh():  # def fresh
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "block":
        outer()
    else:
        print(fresh())
