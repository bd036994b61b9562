"""A small order service to trace: a request loop on the main thread and a worker thread."""

import json
import threading
import time

PRICES = {"apple": 3, "pear": 4, "plum": 2}


def parse(raw):
    return json.loads(raw)


def price(items):
    return sum(PRICES[name] * count for name, count in items.items())


def discount(total, depth=3):
    if depth == 0 or total < 10:
        return total
    return discount(total * 0.9, depth - 1)


def handle_request(raw):
    order = parse(raw)
    total = discount(price(order["items"]))
    time.sleep(0.01)  # the database
    return json.dumps({"id": order["id"], "total": round(total, 2)})


def refresh_cache():
    time.sleep(0.05)
    return len(PRICES)


def worker(stop):
    while not stop.is_set():
        refresh_cache()


def main():
    stop = threading.Event()
    threading.Thread(target=worker, args=(stop,), name="cache", daemon=True).start()
    number = 0
    while True:
        number += 1
        raw = json.dumps({"id": number, "items": {"apple": number % 5, "pear": 2}})
        handle_request(raw)


if __name__ == "__main__":
    main()
