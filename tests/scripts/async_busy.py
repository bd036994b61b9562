"""A supervisor coroutine, main, whose child task `busy` spins in a nested coroutine (a pure
Python loop, awaiting asyncio.sleep(0) every few thousand rounds) until a line comes on stdin.
main waits for it in a TaskGroup on 3.11+, by awaiting the task itself on 3.9 and 3.10 (which
have no TaskGroup). Prints `ready` once busy spins."""
import asyncio
import sys
import threading

stop = threading.Event()


def spin(rounds):  # def spin
    total = 0
    for i in range(rounds):
        total += i * i
    return total


async def work():  # def work
    announced = False
    while not stop.is_set():
        spin(20000)
        if not announced:
            print("ready", flush=True)
            announced = True
        await asyncio.sleep(0)


async def busy():  # def busy
    await work()


async def main():  # def main
    if sys.version_info >= (3, 11):
        async with asyncio.TaskGroup() as group:
            group.create_task(busy(), name="busy")
    else:
        await asyncio.get_running_loop().create_task(busy(), name="busy")


def wait_for_line():
    sys.stdin.readline()
    stop.set()


if __name__ == "__main__":
    threading.Thread(target=wait_for_line, daemon=True).start()
    asyncio.run(main())
