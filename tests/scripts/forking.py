"""Forks a child that burns CPU in work() for a second; prints the child's PID as JSON."""
import json
import os
import sys
import time


def work():  # def work
    end = time.thread_time() + 1.0
    while time.thread_time() < end:
        pass


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    child = os.fork()
    if child == 0:
        work()
        os._exit(0)
    os.waitpid(child, 0)
    sys.stdout.write(json.dumps({"child": child}) + "\n")
