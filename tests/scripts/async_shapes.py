"""asyncio tasks in the shapes dump must survive, by argv[1]:
- running: a task spinning in a coroutine while main awaits it;
- cycle: two tasks awaiting each other (a deadlock Python allows);
- garbage: a task whose coroutine's code pointer is overwritten with garbage (ctypes);
- looped (3.14+): a task list whose node points back to itself (ctypes);
- many N: N tasks, each waiting on one Event.
Prints "ready" once the shape is in place, then waits for ever."""

import asyncio
import ctypes
import sys

SHAPE = sys.argv[1]


def ready():
    print("ready", flush=True)


async def spin():
    ready()
    count = 0
    while True: count += 1  # spin spins


async def spinner():
    await spin()  # spinner awaits


async def first(tasks):
    await asyncio.sleep(0)
    await tasks["second"]  # first awaits second


async def second(tasks):
    await asyncio.sleep(0)
    await tasks["first"]  # second awaits first


async def waiting(event):
    await event.wait()  # waiting waits


def spoil(coroutine, at: int) -> None:
    """Overwrite the pointer at byte `at` of a coroutine object with garbage."""
    ctypes.c_uint64.from_address(id(coroutine) + at).value = 0xDEAD0000BEEF0000


async def main():
    loop = asyncio.get_running_loop()
    if SHAPE == "running":
        await loop.create_task(spinner(), name="spinner")  # main awaits
    elif SHAPE == "cycle":
        tasks = {}
        tasks["first"] = loop.create_task(first(tasks), name="first")
        tasks["second"] = loop.create_task(second(tasks), name="second")
        for _ in range(3):
            await asyncio.sleep(0)
        loop.call_soon(ready)
        await asyncio.Event().wait()
    elif SHAPE == "garbage":
        event = asyncio.Event()
        task = loop.create_task(waiting(event), name="spoiled")
        await asyncio.sleep(0)
        # 3.9, 3.10: gi_frame (a pointer to the frame); 3.11+: the frame inside the coroutine, its code first
        # (3.11: f_code at 32 of the frame at 80; 3.12+: at 0 of the frame at 72)
        at = {(3, 9): 16, (3, 10): 16, (3, 11): 80 + 32}.get(sys.version_info[:2], 72)
        spoil(task.get_coro(), at)
        loop.call_soon(ready)
        await asyncio.Event().wait()
    elif SHAPE == "looped":
        event = asyncio.Event()
        tasks = [loop.create_task(waiting(event), name=f"looped-{index}") for index in range(3)]
        await asyncio.sleep(0)
        node = id(tasks[1]) + 152  # task_node (3.14, 3.15): next, then prev
        ctypes.c_uint64.from_address(node).value = node  # the list now ends in a loop
        loop.call_soon(ready)
        await asyncio.Event().wait()
    elif SHAPE == "many":
        event = asyncio.Event()
        tasks = [loop.create_task(waiting(event)) for _ in range(int(sys.argv[2]))]
        await asyncio.sleep(0)
        loop.call_soon(ready)
        await event.wait()
        del tasks


asyncio.run(main())
