"""CPU split 50/30/20 between three functions, each timing its own share with the thread's CPU
clock, for `size` seconds; prints the seconds, then the shares it measured as JSON."""

import json
import time

from timing import timed

spent = {"func_a": 0.0, "func_b": 0.0, "func_c": 0.0}


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def burn(name: str, seconds: float) -> None:
    start = time.thread_time()
    spin(seconds)
    spent[name] += time.thread_time() - start


def func_a() -> None:
    burn("func_a", 0.050)


def func_b() -> None:
    burn("func_b", 0.030)


def func_c() -> None:
    burn("func_c", 0.020)


def work(seconds: int) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        func_a()
        func_b()
        func_c()


if __name__ == "__main__":
    timed(work)
    total = sum(spent.values())
    print(json.dumps({name: value / total for name, value in spent.items()}), flush=True)
