"""Worker threads started after the tracer attaches, each with a known sequence of calls."""
import sys
import threading


def step(i):  # def step
    return i  # step returns


def work(count):  # def work
    return sum(step(i) for i in range(count))  # work returns


def worker(count, results):  # def worker
    results.append(work(count))  # worker returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    results = []
    threads = [threading.Thread(target=worker, args=(n, results)) for n in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sorted(results))
