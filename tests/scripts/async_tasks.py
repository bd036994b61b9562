"""asyncio tasks for dump: a supervisor (a TaskGroup from 3.11, a gather before) of three named
tasks, one three coroutines deep, one blocked on an Event, one gathering two coroutines.
Prints "ready" once every task waits where the test expects it, then waits for ever."""

import asyncio
import sys


async def level3(event):
    await event.wait()  # level3 waits


async def level2(event):
    await level3(event)  # level2 awaits


async def level1(event):
    await level2(event)  # level1 awaits


async def blocked(event):
    await event.wait()  # blocked waits


async def sleeper():
    await asyncio.sleep(3600)  # sleeper sleeps


async def gathered():
    await asyncio.gather(sleeper(), sleeper())  # gathered gathers


def ready():
    print("ready", flush=True)


async def main():
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    if hasattr(asyncio, "TaskGroup"):
        async with asyncio.TaskGroup() as group:  # main groups
            group.create_task(level1(event), name="nested")
            group.create_task(blocked(event), name="blocked")
            group.create_task(gathered(), name="gatherer")
            for _ in range(5):  # each task, and gather's, to its first wait
                await asyncio.sleep(0)
            loop.call_soon(ready)  # runs once main waits in the group's exit
    else:
        tasks = [loop.create_task(level1(event), name="nested"), loop.create_task(blocked(event), name="blocked"),
                 loop.create_task(gathered(), name="gatherer")]
        for _ in range(5):
            await asyncio.sleep(0)
        loop.call_soon(ready)
        await asyncio.gather(*tasks)  # main gathers


asyncio.run(main())
sys.exit(1)  # never: the tasks wait for ever
