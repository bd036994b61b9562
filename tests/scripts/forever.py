"""Calls functions until it is told to stop (a line on stdin) or killed; prints how many.
A line "beat?" does not stop it: it answers "beat" once it has made BEAT more calls, so that
whoever asked knows it has run on a CPU since (in a VM, its CPU time may not show that)."""
import sys
import threading

BEAT = 100_000


def tick(n):  # def tick
    return n + 1


def main():
    stop = threading.Event()
    asked = []  # a list, not an Event: checking it makes no call (the stacks stay as they were)

    def listen():
        while sys.stdin.readline() == "beat?\n":
            asked.append(True)
        stop.set()

    threading.Thread(target=listen, daemon=True).start()
    count = since = 0
    while not stop.is_set():
        count = tick(count)
        if asked and count % 1000 == 0:
            since = since or count
            if count - since >= BEAT:
                asked.clear()
                since = 0
                print("beat", flush=True)
    print("ticks done")


main()
