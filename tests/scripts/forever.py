"""Calls functions until it is told to stop (a line on stdin) or killed; prints how many."""
import sys
import threading


def tick(n):  # def tick
    return n + 1


def main():
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    count = 0
    while not stop.is_set():
        count = tick(count)
    print("ticks done")


main()
