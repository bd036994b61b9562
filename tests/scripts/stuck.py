"""argv[1] threads stopped inside stuck(), then the process exits under them (os._exit)."""
import os
import sys
import threading


def stuck(inside, release):  # def stuck
    inside.release()
    release.wait()


def worker(inside, release):  # def worker
    stuck(inside, release)


if __name__ == "__main__":
    count = int(sys.argv[1])
    sys.stdin.readline()  # wait for the tracer
    inside, release = threading.Semaphore(0), threading.Event()
    for _ in range(count):
        threading.Thread(target=worker, args=(inside, release), daemon=True).start()
    for _ in range(count):
        inside.acquire()
    os._exit(0)
