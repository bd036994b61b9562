"""py-spy's unicode test, anew: a file whose name is not ASCII, functions named in Cyrillic."""
import sys
import time


def функция():  # def функция
    print("ready", flush=True)
    sys.stdin.readline()  # функция ждёт
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # функция крутится
        pass


if __name__ == "__main__":
    функция()  # модуль зовёт
