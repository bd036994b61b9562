"""Exceptions unwinding through frames, a generator, a coroutine, a decorated function."""
import functools
import sys


def fail():  # def fail
    raise ValueError("boom")  # fail raises


def relay():  # def relay
    fail()  # relay unwinds


def catcher():  # def catcher
    try:
        relay()
    except ValueError:
        return "caught"  # catcher returns


def numbers(n):  # def numbers
    for i in range(n):  # numbers loop
        yield i  # numbers yields


def consume():  # def consume
    return sum(numbers(2))  # consume returns


async def child():  # def child
    return 1  # child returns


async def parent():  # def parent
    return await child() + 1  # parent returns


def drive():  # def drive
    coroutine = parent()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # drive returns


def traced(function):  # def traced
    @functools.wraps(function)  # def wrapper
    def wrapper(*args):
        return function(*args)  # wrapper returns
    return wrapper  # traced returns


@traced  # def decorated
def decorated(x):
    return x * 2  # decorated returns


def main():  # def main
    catcher()
    consume()
    drive()
    decorated(3)
    return "done"  # main returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(main())  # module ends
