"""Forks a child once let go (a line on stdin), which calls a function every 50 ms; prints the
child's PID, and ends it when its own stdin ends."""
import os
import signal
import sys
import time


def tick():  # def tick
    return 1


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    child = os.fork()
    if child == 0:
        while True:
            tick()
            time.sleep(0.05)
    print(child, flush=True)
    sys.stdin.read()
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
