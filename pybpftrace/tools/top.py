"""`pybpftrace top`: the functions entered most often, across every traced process, refreshed
each interval: a live screen on a terminal (q quits), plain tables otherwise."""

from __future__ import annotations

import curses
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional, TextIO

from ..events import COUNTER_COUNTS_FULL, COUNTER_THREADS_FULL, Process
from ..program import Handler, Loss, ProgramSpec
from ..session import Consumer, Session, Summary, TraceOptions, run_tool, signed_total
from ..sources import FirstLines

SPEC = ProgramSpec(
    "top.bpf.c",
    (("function__entry", Handler("on_function_entry", 3)),),
    markers=(("_Py_MakeCoro", Handler("on_generator_created", 3)),),
    names_layout=True,
    losses=(
        Loss(COUNTER_COUNTS_FULL, "{n} entries not counted: the counts map ({counts}) was full", dropped=True),
        Loss(COUNTER_THREADS_FULL, "{n} threads beyond {last_entry} live ones whose generator creations count as "
             "calls: the last_entry map was full"),
    ),
)
TICK = 0.1  # seconds between looks at the keyboard

Row = tuple[int, str, str, int]  # pid, function, file, first line


@dataclass
class TopOptions:
    trace: TraceOptions
    output: Optional[TextIO] = None
    json: bool = False
    interval: float = 1.0
    once: bool = False
    top: int = 20


class Top(Consumer):
    interval = TICK

    def __init__(self, session: Session, options: TopOptions, out: TextIO):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._out = out
        self._generation = 0
        self._ticks = 0
        self._per_refresh = max(1, round(options.interval / TICK))
        self._since = session.start / 1e9  # when tracing began, on time.monotonic's clock
        self._shown = False
        self._sources = FirstLines()
        self._exited: Counter = Counter()  # counts of processes that exited, for the next table
        live = out.isatty() and not options.json and not options.once
        self._screen = Screen() if live else None


    def collect(self, everything: bool = False) -> Counter:
        """The calls counted since the last collection: switch generations, then read and
        delete the old one's counts (an entry that read the generation just before the
        switch lands in it a moment later, and is read with it next time). `everything`:
        once tracing is off, both generations."""
        old = self._generation
        self._generation ^= 1
        configure(self.session, self._generation)
        calls, self._exited = self._exited + self._take(lambda key: everything or key.generation == old), Counter()
        return +calls  # without the rows that came to zero

    def on_exits(self, processes: set[Process]) -> None:
        """Their counts are taken now, while their names are known, for the next table."""
        self._exited.update(self._take(lambda key: (key.pid, key.incarnation) in processes))
        for pid, _ in processes:
            self._sources.forget(pid)

    def _take(self, wanted: Callable) -> Counter:
        """The counts whose keys are wanted, taken out of the kernel's map."""
        names = self.session.names
        table = self.session.program.table("counts")
        calls: Counter = Counter()
        for key, value in list(table.items()):
            if not wanted(key):
                continue
            del table[key]
            file, function = names.get(key.pid, key.incarnation, key.first, key.second)
            if key.pid not in self._sources:
                self._sources.watch(key.pid)
            line = self._sources.resolve(key.pid, file, function, key.line) or key.line
            calls[(key.pid, function, file, line)] += signed_total(value)
        return calls

    def on_interval(self) -> bool:
        self._ticks += 1
        if self._screen and self._screen.quit_pressed():
            return True
        if self._ticks % self._per_refresh:
            return False
        self._show(self.collect())
        return self._options.once

    def _show(self, calls: Counter, until: Optional[float] = None) -> None:
        """The calls counted since the last table, up to now or to `until` (when tracing stopped)."""
        self._shown = True
        now = until or time.monotonic()
        seconds, self._since = now - self._since, now
        rows = calls.most_common(self._screen.rows() if self._screen else self._options.top)
        title = f"{time.strftime('%H:%M:%S')}  calls in the last {seconds:.2f} s"
        if self._screen:
            self._screen.draw(title + "  (q to quit)", table(rows))
        elif self._options.json:
            self._out.write(json.dumps({"time": time.time(), "seconds": round(seconds, 3), "functions": [
                {"pid": pid, "function": function, "file": file, "line": line, "calls": count}
                for (pid, function, file, line), count in rows
            ]}) + "\n")
        else:
            self._out.write("\n".join([title, *table(rows)]) + "\n\n")
        self._out.flush()

    def finish(self, summary: Summary) -> None:
        self.close()
        calls = self.collect(everything=True)
        if calls and not (self._options.once and self._shown):  # the last, unfinished interval
            self._show(calls, until=self.session.start / 1e9 + summary.seconds)
        self._sources.close()

    def close(self) -> None:
        if self._screen:
            self._screen.close()
            self._screen = None


def configure(session: Session, generation: int = 0) -> None:
    """Where entries count, and whether to remember each thread's last one (CPython 3.15
    takes back the entries that created generators)."""
    binaries = [b for group in session.targets.binaries.values() for b in group]
    table = session.program.table("top_settings")
    value = table.Leaf()
    value.generation = generation
    value.retract = int(any(b.quirks.generator_creation_marker for b in binaries))
    table[table.Key(0)] = value


def table(rows: list[tuple[Row, int]]) -> list[str]:
    lines = [f"{'PID':>8} {'CALLS':>10}  FUNCTION (FILE:LINE)"]
    lines += [f"{pid:>8} {count:>10}  {function} ({file}:{line})" for (pid, function, file, line), count in rows]
    return lines


class Screen:
    """The live view: redrawn each interval, q quits."""

    def __init__(self) -> None:
        self._window = curses.initscr()
        curses.noecho()
        curses.cbreak()
        self._window.nodelay(True)
        self._window.keypad(True)

    def rows(self) -> int:
        return max(1, self._window.getmaxyx()[0] - 3)

    def quit_pressed(self) -> bool:
        key = self._window.getch()
        return key in (ord("q"), ord("Q"))

    def draw(self, title: str, lines: list[str]) -> None:
        height, width = self._window.getmaxyx()
        self._window.erase()
        for row, text in enumerate([title, "", *lines][: height - 1]):
            self._window.addnstr(row, 0, text, width - 1, curses.A_BOLD if row in (0, 2) else 0)
        self._window.refresh()

    def close(self) -> None:
        curses.nocbreak()
        self._window.keypad(False)
        curses.echo()
        curses.endwin()


def run(options: TopOptions) -> int:
    out = options.output or sys.stdout
    return run_tool("top", SPEC, None, options.trace, lambda session: Top(session, options, out), configure)
