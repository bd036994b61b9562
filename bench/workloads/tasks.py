"""argv[1] asyncio tasks, each waiting on one Event in a coroutine two deep; `ready`, then
waits for ever (bench.dump reads its tasks)."""

import asyncio
import sys


async def inner(event):
    await event.wait()


async def outer(event):
    await inner(event)


async def main():
    event = asyncio.Event()
    tasks = [asyncio.create_task(outer(event)) for _ in range(int(sys.argv[1]))]
    await asyncio.sleep(0)
    print("ready", flush=True)
    await event.wait()
    del tasks


asyncio.run(main())
