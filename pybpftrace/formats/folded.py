"""Folded stacks, `frame;frame;frame WEIGHT` a line, sorted: what flamegraph.pl and most
flame graph tools read. Time weights are written in microseconds."""

from __future__ import annotations

from typing import BinaryIO

from ..escaping import folded_label
from .model import Stacks


def folded_totals(stacks: Stacks) -> dict[str, int]:
    """Each folded stack and its weight (time in microseconds), zero weights left out. Labels
    merge where they read the same; `;` separates frames and a line a stack: inside a name
    they (and `\\` and controls) are escaped, reversibly (escaping.folded_label)."""
    raw: dict[str, int] = {}
    for labels, value in stacks.merged().items():
        key = ";".join(folded_label(label) for label in labels)
        raw[key] = raw.get(key, 0) + value
    if stacks.weight.is_time:
        scaled = {key: round(stacks.weight.nanoseconds(value) / 1000) for key, value in raw.items()}
    else:
        scaled = raw
    return {key: value for key, value in scaled.items() if value}


def folded_lines(stacks: Stacks) -> list[str]:
    return [f"{stack} {value}" for stack, value in sorted(folded_totals(stacks).items())]


def write(stacks: Stacks, out: BinaryIO) -> None:
    out.write("".join(line + "\n" for line in folded_lines(stacks)).encode())
