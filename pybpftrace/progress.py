"""The live status line: while a trace runs and stderr is a terminal, one line rewritten in
place (time traced, events, lost, what is being written), erased when tracing ends."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, TextIO

ERASE = "\r\x1b[K"
EVERY_NS = 250_000_000


def wanted(quiet: bool, writes_stdout: bool, stderr: TextIO = sys.stderr, stdout: TextIO = sys.stdout) -> bool:
    """On a terminal only, and not where the trace's own lines go to that terminal too."""
    return not quiet and stderr.isatty() and not (writes_stdout and stdout.isatty())


class Progress:
    def __init__(self, counts: Callable[[], tuple[int, int]], writing: Callable[[], str], unit: str = "events",
                 stream: TextIO = sys.stderr):
        self._counts = counts  # (events, lost) so far
        self._writing = writing  # what is being written, in a few words
        self._unit = unit  # what the counts count, in the summary's word (profile's samples, say)
        self._stream = stream
        self._next = 0
        self._shown = False

    def update(self, started: int, now: Optional[int] = None) -> None:
        """Rewrite the line, at most every EVERY_NS; started: when tracing began (monotonic ns)."""
        now = now if now is not None else time.monotonic_ns()
        if now < self._next:
            return
        self._next = now + EVERY_NS
        events, lost = self._counts()
        writing = self._writing()
        line = f"pybpftrace: {(now - started) / 1e9:.1f} s, {events:,} {self._unit}, {lost:,} lost" + (
            f", {writing}" if writing else "")
        try:
            width = os.get_terminal_size(self._stream.fileno()).columns or 80  # 0: a pty never sized
        except OSError:
            width = 80
        self._stream.write(ERASE + line[: width - 1])
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write(ERASE)
            self._stream.flush()
            self._shown = False


def size(bytes_: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if bytes_ < 1024:
            return f"{bytes_:.0f} {unit}" if unit == "B" else f"{bytes_:.1f} {unit}"
        bytes_ /= 1024
    return f"{bytes_:.1f} GiB"
