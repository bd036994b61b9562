"""A parent that forks two workers (multiprocessing, fork start method) after a pause."""
import multiprocessing
import sys
import time


def child_step(n):  # def child_step
    return n * 2  # child_step returns


def child_work(n):  # def child_work
    time.sleep(0.5)  # let the tracer attach
    return child_step(n)  # child_work returns


def parent_work():  # def parent_work
    return 1  # parent_work returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=child_work, args=(n,)) for n in (1, 2)]
    for worker in workers:
        worker.start()  # workers start
    parent_work()
    for worker in workers:
        worker.join()
    print([worker.exitcode for worker in workers])
