"""Call-heavy: recursive fib, nothing but Python calls (fib(n) makes 2*fib(n+1)-1 calls)."""

from timing import timed


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


if __name__ == "__main__":
    timed(fib)
