"""A known line sequence: a loop of two iterations calling a two-line function."""
import sys


def double(n):  # def double
    result = n * 2  # double body
    return result  # double returns


def main():  # def main
    total = 0  # main starts
    for i in range(2):  # main loops
        total += double(i)  # main calls
    return total  # main returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(main())  # module ends
