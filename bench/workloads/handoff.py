"""Producer and consumer threads handing items over a queue: the threads switch at every item
(the off-CPU profile's dearest case)."""

import queue
import threading

from timing import timed


def produce(items: queue.Queue, count: int) -> None:
    for number in range(count):
        items.put(number)
    items.put(None)


def consume(items: queue.Queue) -> None:
    while items.get() is not None:
        pass


def hand_over(count: int) -> None:
    items: queue.Queue = queue.Queue(maxsize=1)
    threads = [threading.Thread(target=produce, args=(items, count)), threading.Thread(target=consume, args=(items,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    timed(hand_over)
