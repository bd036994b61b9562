"""A recursion of the depth given, whose innermost call burns CPU until stdin closes."""
import sys
import threading

sys.setrecursionlimit(10000)
running = [True]


def spin():  # def spin
    while running[0]:  # spin loops
        pass


def down(depth):  # def down
    if depth == 0:
        spin()
    else:
        down(depth - 1)  # down recurses


def stop_at_end_of_input():
    sys.stdin.read()
    running[0] = False


if __name__ == "__main__":
    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    down(int(sys.argv[1]))
