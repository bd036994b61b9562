"""Call-heavy: fib(N) on each of THREADS threads at once (fib(n) makes 2*fib(n+1)-1 calls)."""
import sys
import threading


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


if __name__ == "__main__":
    n, count = int(sys.argv[1]), int(sys.argv[2])
    sys.stdin.readline()  # wait for the tracer (launched, it reads an empty stdin)
    results = []
    threads = [threading.Thread(target=lambda: results.append(fib(n))) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(*results)
