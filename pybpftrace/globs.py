"""Glob patterns (`*` any run of bytes, `?` one byte) compiled for bpf/glob.h, which matches
them in the kernel, one pass over the text.

A pattern becomes a bit-parallel automaton: bit i of the state says "the first i characters of
the pattern can match what was read so far". A character c moves position i to i + 1 where
the pattern holds `?` or c there, and keeps it where the pattern holds `*`; a `*` also lets
the position after it match at once. The kernel's state is 64 bits wide, so a pattern has at
most 63 characters once adjacent stars are merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LENGTH = 63
CHARACTERS = 256
_MASK = (1 << 64) - 1


class GlobError(ValueError):
    """A pattern the kernel matcher cannot take."""


@dataclass(frozen=True)
class CompiledGlob:
    """The fields of bpf/glob.h's struct glob."""

    start: int
    stars: int
    accept: int
    steps: tuple[int, ...]  # one bit set per position each character can pass


def _close(state: int, stars: int) -> int:
    """Let every star reached also match nothing (stars are never adjacent: one step does)."""
    return state | ((state & stars) << 1) & _MASK


def compile_glob(pattern: str) -> CompiledGlob:
    """The automaton of a pattern, matched byte by byte against UTF-8 text."""
    encoded = re.sub(rb"\*+", b"*", pattern.encode())
    if not encoded or b"\0" in encoded:
        raise GlobError(f"{pattern!r}: a pattern is 1 to {MAX_LENGTH} characters, without NUL")
    if len(encoded) > MAX_LENGTH:
        raise GlobError(f"{pattern!r} has {len(encoded)} characters: at most {MAX_LENGTH} are matched in the kernel")
    stars = 0
    steps = [0] * CHARACTERS
    for position, byte in enumerate(encoded):
        bit = 1 << position
        if byte == ord("*"):
            stars |= bit
        elif byte == ord("?"):
            steps = [step | bit for step in steps]
        else:
            steps[byte] |= bit
    return CompiledGlob(_close(1, stars), stars, 1 << len(encoded), tuple(steps))

