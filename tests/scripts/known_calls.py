"""Calls of every kind: recursion; generators driven by next, send, throw and close; a generator
expression; coroutines under asyncio.run; __init__, methods and a property; two methods of one
name in one file, a closure and an __init__ calling super()'s; an exception unwinding three
frames; a recursion DEPTH deep; a second thread.

    known_calls.py --truth [DEPTH]   the workload's calls as sys.setprofile counts them, as JSON,
                                     by `function (line)` (its first line): the truth, untraced
    known_calls.py [DEPTH]           waits for a line on stdin, then runs the workload once
"""
import asyncio
import json
import sys
import threading
from collections import Counter

sys.setrecursionlimit(2000)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def numbers(limit):
    for number in range(limit):
        yield number


def catching():
    while True:
        try:
            yield
        except KeyError:
            pass


def drive_generators():
    counting = numbers(5)
    next(counting)
    counting.send(None)
    for _ in counting:  # to the end (a close() here runs the frame on some versions only)
        pass
    catcher = catching()
    next(catcher)
    catcher.throw(KeyError)
    catcher.throw(KeyError)
    catcher.close()
    return sum(x * 2 for x in range(20))


async def leaf(n):
    await asyncio.sleep(0)
    return n


async def parent():
    total = 0
    for n in range(5):
        total += await leaf(n)
    return total


class Box:
    def __init__(self, value):
        self.value = value

    def double(self):
        return self.value * 2

    @property
    def size(self):
        return self.value


def objects():
    boxes = [Box(n) for n in range(60)]
    return sum(box.double() + box.size for box in boxes)


class Task:
    def fn(self):  # one of two methods of one name in one file
        return 1


class Other:
    def fn(self):
        return 2


def adder(step):
    def add(value):  # a closure (its entry reports line -1 on 3.15)
        return value + step
    return add


class Base:
    def __init__(self):
        self.ready = True


class Derived(Base):
    def __init__(self):  # uses super(): a __class__ cell
        super().__init__()


def same_names():
    add = adder(2)
    return sum(Task().fn() for _ in range(3)) + sum(Other().fn() for _ in range(5)) + sum(
        add(n) for n in range(4)) + len([Derived() for _ in range(2)])


def fail():
    raise ValueError("unwinding")


def relay():
    fail()


def unwind():
    try:
        relay()
    except ValueError:
        pass


def deep(n):
    return 0 if n == 0 else deep(n - 1) + 1


def worker():  # def worker
    fib(15)


def workload(depth):
    fib(20)
    drive_generators()
    asyncio.run(parent())
    objects()
    same_names()
    for _ in range(3):
        unwind()
    deep(depth)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()


def truth(depth):
    """The workload's calls as sys.setprofile counts them, by `function (first line)`."""
    counts = Counter()

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename == __file__:
            counts[f"{code.co_name} ({code.co_firstlineno})"] += 1

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        workload(depth)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    counts.pop(f"truth ({truth.__code__.co_firstlineno})", None)
    return counts


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--truth"]:
        print(json.dumps(truth(int(arguments[1]) if len(arguments) > 1 else 900)))
    else:
        sys.stdin.readline()  # wait for the tracer
        workload(int(arguments[0]) if arguments else 900)
        print("done", flush=True)
