"""For bench/startup.py: a process with something for every command to see (calls, a young
garbage collection, an import, its audit event), asleep most of the time so that the
tracers starting beside it have the machine's cores. Says ready, runs until killed."""
import gc
import importlib
import sys
import time


def step(n):
    return n + 1


def main():
    print("ready", flush=True)
    while True:
        n = 0
        for _ in range(100):
            n = step(n)
        gc.collect(0)
        sys.modules.pop("colorsys", None)
        importlib.import_module("colorsys")
        time.sleep(0.01)


main()
