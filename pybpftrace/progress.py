"""What stderr tells while a trace runs: the live status line (while stderr is a terminal, one
line rewritten in place: time traced, events, lost, what is being written; erased when tracing
ends), and a line for each Python found since tracing began."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable, Optional, TextIO

from .escaping import shown

ERASE = "\r\x1b[K"
EVERY_NS = 250_000_000
FOUND_TOLD = 20  # Pythons found while tracing that get a line each (a shell loop may start thousands)


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
            self._next = 0  # drawn again at the next update


class FoundLines:
    """A line for each Python found since tracing began (a launched command's, one started
    under --subprocesses' roots, one --all or --binary selects), the first FOUND_TOLD of them:
    from that line on, its stacks are read. A process found again running the same Python
    (the walker may register it twice, or it exec'd itself) is not news."""

    def __init__(self, stream: TextIO = sys.stderr):
        self._stream = stream
        self._told: set[tuple[int, Optional[int], str]] = set()  # at most FOUND_TOLD
        self._more = False

    def tell(self, found: Iterable[tuple[int, Optional[int], str]], progress: Optional[Progress]) -> None:
        """found: (PID, its start time, what it runs) of each, in the order found."""
        lines = []
        for pid, started, what in found:
            if (pid, started, what) in self._told:
                continue
            if len(self._told) < FOUND_TOLD:
                self._told.add((pid, started, what))
                lines.append(f"pybpftrace: found PID {pid} ({what}): its stacks are read")
            elif not self._more:
                self._more = True
                lines.append(f"pybpftrace: found more Pythons: the first {FOUND_TOLD} are told, not the others")
        self._write(lines, progress)

    def left_out(self, pids: Iterable[int], progress: Optional[Progress]) -> None:
        """Pythons found that then said they are pybpftrace tracers (tracers.py): no longer read.
        Those told of are told of again."""
        told = {pid for pid, _, _ in self._told}
        self._write([f"pybpftrace: PID {pid} is another pybpftrace: its stacks are no longer read"
                     for pid in pids if pid in told], progress)

    def _write(self, lines: list[str], progress: Optional[Progress]) -> None:
        if lines:
            if progress:
                progress.clear()
            self._stream.write("".join(shown(line) + "\n" for line in lines))
            self._stream.flush()


def size(bytes_: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if bytes_ < 1024:
            return f"{bytes_:.0f} {unit}" if unit == "B" else f"{bytes_:.1f} {unit}"
        bytes_ /= 1024
    return f"{bytes_:.1f} GiB"
