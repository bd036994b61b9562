"""Threads held in known places: asleep, waiting for a lock, in a generator, in an asyncio task,
600 calls deep and burning CPU; `ready` on stdout once all are in place; exits on stdin's end."""
import asyncio
import sys
import threading
import time

lock = threading.Lock()
lock.acquire()
placed = threading.Barrier(7)


def sleeper():  # def sleeper
    placed.wait()
    time.sleep(3600)  # sleeper sleeps


def waiter():  # def waiter
    placed.wait()
    lock.acquire()  # waiter waits


def numbers():  # def numbers
    placed.wait()
    time.sleep(3600)  # numbers sleeps
    yield 1


def consumer():  # def consumer
    for _ in numbers():  # consumer iterates
        pass


async def task():  # def task
    placed.wait()
    await asyncio.sleep(3600)


def looper():  # def looper
    asyncio.run(task())  # looper runs


def deep(depth):  # def deep
    if depth == 0:
        placed.wait()
        time.sleep(3600)  # deep sleeps
    deep(depth - 1)  # deep recurses


def burner():  # def burner
    placed.wait()
    while True: pass  # burner burns


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    for function, args in ((sleeper, ()), (waiter, ()), (consumer, ()), (looper, ()), (deep, (600,)), (burner, ())):
        threading.Thread(target=function, args=args, name=function.__name__, daemon=True).start()
    placed.wait()
    time.sleep(0.2)  # until the threads have gone from the barrier into their waits
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # main reads
