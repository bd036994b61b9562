"""A process to trace from outside its PID namespace (a container): its main thread busy in
spin(), a named thread waiting in wait_here(); ready when both run, until a line on stdin."""
import os
import sys
import threading
import time


def spin():  # def spin
    end = time.monotonic() + 0.02
    while time.monotonic() < end:
        pass


def wait_here():  # def wait_here
    while True:
        time.sleep(0.05)


def main():  # def main
    threading.Thread(target=wait_here, name="contained-worker", daemon=True).start()
    threading.Thread(target=lambda: (sys.stdin.readline(), os._exit(0)), name="stdin-watch", daemon=True).start()
    print("ready", os.getpid(), flush=True)
    while True:
        spin()


main()
