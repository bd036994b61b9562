"""Two threads, both call-heavy at once: each computes fib(size) on its own."""

import threading

from timing import timed


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def both(size: int) -> None:
    threads = [threading.Thread(target=fib, args=(size,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    timed(both)
