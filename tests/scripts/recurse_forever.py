"""py-spy's recursive.py: a thread that recurses and returns forever, always on its CPU."""
import sys


def recurse(x):  # def recurse
    if x == 0:  # recurse bottom
        return  # recurse returns
    recurse(x - 1)  # recurse calls


if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    print("ready", flush=True)
    while True:  # module loops
        recurse(20)  # module recurses
