"""Recursion deeper than any fixed-size buffer."""
import sys

sys.setrecursionlimit(20000)


def down(n):  # def down
    if n == 0:
        return 0  # down bottom
    return down(n - 1) + 1  # down returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(down(int(sys.argv[1])))  # module ends
