"""A known call hierarchy: top -> middle -> leaf, twice, then leaf again."""
import sys


def leaf(n):  # def leaf
    return n + 1  # leaf returns


def middle(n):  # def middle
    total = 0
    for i in range(n):
        total += leaf(i)
    return total  # middle returns


def top():  # def top
    return middle(2) + leaf(10)  # top returns


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(top())  # module ends
