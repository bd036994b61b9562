"""A target for dump's benchmark: a thread that calls and returns without pause (py-spy's
recursion), timing the longest gap between two of its loop's turns; a frame with 30 locals
asleep; the main thread answers each line on stdin with the longest gap since the last."""
import sys
import threading
import time

gap = 0.0


def recurse(depth):
    if depth:
        recurse(depth - 1)


def spin():
    global gap
    last = time.perf_counter()
    while True:
        recurse(20)
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now


def thirty_locals():
    v00, v01, v02, v03, v04, v05, v06, v07, v08, v09 = range(10)
    v10, v11, v12, v13, v14, v15, v16, v17, v18, v19 = ("text " * 10,) * 10
    v20, v21, v22, v23, v24, v25, v26, v27, v28, v29 = ([1, 2.5, "x", (None, True)], {"k": [1, 2]}) * 5
    time.sleep(3600)


if __name__ == "__main__":
    threading.Thread(target=spin, daemon=True).start()
    threading.Thread(target=thirty_locals, daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        print(f"{gap:.6f}", flush=True)
        gap = 0.0
