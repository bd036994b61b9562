"""Generators resumed by next(), by throw() and by close(): every resumption is a call."""
import sys


def numbers():  # def numbers
    try:
        while True:
            try:
                yield 1
            except KeyError:
                pass  # numbers catches
    finally:
        pass  # numbers closes


def main():  # def main
    total = 0
    for _ in range(3):
        generator = numbers()
        total += next(generator)  # a call
        generator.throw(KeyError())  # a resumption by throw()
        generator.throw(KeyError())
        generator.close()  # a resumption by close()
    return total


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(main())
