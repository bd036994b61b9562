"""A method and a function nested in it: qualified names Shop.serve and
Shop.serve.<locals>.inner."""
import sys
import time


class Shop:
    def serve(self):
        def inner():
            print("ready", flush=True)
            sys.stdin.readline()  # inner waits
            time.sleep(0.2)  # inner sleeps

        inner()  # serve calls


if __name__ == "__main__":
    Shop().serve()
