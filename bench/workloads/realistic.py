"""A realistic mix: JSON in and out, regular expressions, dataclasses and a small class
hierarchy, with the Python-level calls such code makes (object hooks, re callbacks,
dataclasses.asdict, super().__init__, properties, generators)."""

import dataclasses
import json
import re
from dataclasses import dataclass, field

from timing import timed

SKU = re.compile(r"([a-z]+)-(\d+)")


@dataclass
class Item:
    sku: str
    quantity: int
    price: float


@dataclass
class Order:
    number: int
    customer: str
    items: list[Item] = field(default_factory=list)

    def total(self) -> float:
        return sum(item.quantity * item.price for item in self.items)


class Shape:
    def __init__(self, name: str):
        self.name = name

    def area(self) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name}: {self.area():.1f}"


class Rectangle(Shape):
    def __init__(self, width: float, height: float, name: str = "rectangle"):
        super().__init__(name)
        self.width, self.height = width, height

    def area(self) -> float:
        return self.width * self.height


class Square(Rectangle):
    def __init__(self, side: float):
        super().__init__(side, side, "square")

    @property
    def side(self) -> float:
        return self.width


def as_item(raw: dict) -> object:
    """json object hook: items become Items, the rest stays as it is."""
    return Item(**raw) if "sku" in raw else raw


def normalize_sku(match: re.Match) -> str:
    return f"{match.group(1).upper()}-{int(match.group(2)):05d}"


def order_text(number: int) -> str:
    items = [{"sku": f"item-{number * 7 + k}", "quantity": k + 1, "price": 1.5 * k} for k in range(4)]
    return json.dumps({"number": number, "customer": f"customer {number % 13}", "items": items})


def handle(number: int) -> str:
    raw = json.loads(order_text(number), object_hook=as_item)
    order = Order(raw["number"], raw["customer"], raw["items"])
    for item in order.items:
        item.sku = SKU.sub(normalize_sku, item.sku)
    shapes = [Square(item.quantity) if item.quantity % 2 else Rectangle(item.quantity, item.price) for item in order.items]
    summary = {"order": dataclasses.asdict(order), "total": order.total(), "shapes": [s.describe() for s in shapes]}
    return json.dumps(summary)


def serve(size: int) -> None:
    for number in range(size):
        handle(number)


if __name__ == "__main__":
    timed(serve)
