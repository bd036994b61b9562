"""An order service's work, with a known number of calls of each function: a call tree with
some depth (json's own frames below ours), for the output formats' tests."""
import json
import sys

PRICES = {"apple": 3, "pear": 4, "plum": 2}
ORDERS = 40


def parse(raw):  # def parse
    return json.loads(raw)


def price(items):  # def price
    return sum(PRICES[name] * count for name, count in items.items())


def discount(total, depth=3):  # def discount
    if depth == 0 or total < 10:
        return total
    return discount(total * 0.9, depth - 1)


def render(order, total):  # def render
    return json.dumps({"id": order["id"], "total": round(total, 2)})


def handle(raw):  # def handle
    order = parse(raw)
    return render(order, discount(price(order["items"])))


def main():  # def main
    for number in range(ORDERS):
        handle(json.dumps({"id": number, "items": {"apple": number % 5, "pear": 2}}))


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    main()
    print("served")  # module ends
