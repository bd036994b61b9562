"""Two busy threads: one runs Python (holding the GIL), one hashes in C with the GIL released."""
import hashlib
import sys
import threading

DATA = b"x" * (16 << 20)


def hasher():
    while True:
        hashlib.sha256(DATA).digest()  # hasher hashes


def spinner():
    while True:
        sum(range(1000))  # spinner spins


if __name__ == "__main__":
    threading.Thread(target=hasher, daemon=True).start()
    threading.Thread(target=spinner, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()
