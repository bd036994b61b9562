"""`pybpftrace top`: where the time goes, refreshed each interval, across every traced process:
each function's own and total share of the Python stacks sampled by the kernel (like py-spy
top), on every CPython the walker reads, and how many times it was entered where calls can be
followed. A live screen on a terminal (q quits), plain tables otherwise; either ends with the
whole run's table."""

from __future__ import annotations

import curses
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, TextIO

from ..codes import Codes
from ..escaping import shown
from ..events import COUNTER_COUNTS_FULL, COUNTER_THREADS_FULL, SAMPLE_CPU, Process
from ..program import Loss, ProgramSpec
from ..async_stacks import TaskJoin, task_reader
from ..samples import UNANNOUNCED_CODE, UNREADABLE_CODE, Sample, unpack
from ..sampling import DEFAULT_RATE, WITHOUT_GIL, Sampling
from ..consumer import Consumer, Summary
from ..session import Session, TraceOptions, run_tool, signed_total
from .follow import CALL_LOSSES, code_frame, follows_calls, forget_codes

_FOLLOWING = follows_calls(ProgramSpec("top.bpf.c", ()))
SPEC = ProgramSpec(
    "top.bpf.c", _FOLLOWING.handlers, _FOLLOWING.code_probes,
    walker=True,
    continuations=(("walk_programs", "walk_on_tick", "perf_event"), *_FOLLOWING.continuations),
    losses=(
        Loss(COUNTER_COUNTS_FULL, "{n} entries not counted: the counts map ({counts}) was full", dropped=True),
        Loss(COUNTER_THREADS_FULL, "{n} events of threads beyond {thread_frames} live ones not counted: the "
             "thread_frames map was full", dropped=True),
        *CALL_LOSSES,
        WITHOUT_GIL,
    ),
    follows_calls=True,
    walker_samples=True,
)
ENTRY_PROBES = ("function__entry",)  # counted where the binary has them, or by the eval-frame route
NOT_COUNTED = " (calls not counted: no function probes, and no --eval-hook)"
# calls are counted in the processes named or launched, not in those found under them
DESCENDANTS_NOT_COUNTED = " (calls not counted: not in the Pythons found under a command or with --subprocesses)"
TICK = 0.1  # seconds between looks at the keyboard
SORTS = ("own", "total", "calls")

Function = tuple[int, str, str, int]  # pid, function, file, first line


@dataclass
class TopOptions:
    trace: TraceOptions
    output: Optional[TextIO] = None
    json: bool = False
    interval: float = 1.0
    once: bool = False
    top: int = 20
    rate: int = DEFAULT_RATE
    sort: str = "own"
    calls: bool = True  # count calls where the binaries have the probe
    gil_only: bool = False  # only the samples of threads holding the GIL (--gil)
    async_tasks: bool = False  # samples in asyncio tasks joined to their awaiters (--async)


@dataclass
class Interval:
    """What one interval saw: samples by function, own (innermost) and total (anywhere), and
    entries counted in the kernel."""

    samples: int = 0
    own: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)

    def add(self, other: "Interval") -> None:
        self.samples += other.samples
        self.own.update(other.own)
        self.total.update(other.total)
        self.calls.update(other.calls)

    def rows(self, sort: str, limit: int) -> list[tuple[Function, int, int, int]]:
        functions = set(self.own) | set(self.total) | set(self.calls)
        key = {"own": lambda f: (self.own[f], self.total[f], self.calls[f]),
               "total": lambda f: (self.total[f], self.own[f], self.calls[f]),
               "calls": lambda f: (self.calls[f], self.own[f], self.total[f])}[sort]
        ordered = sorted(functions, key=lambda f: (*key(f), f[1]), reverse=True)[:limit]
        return [(f, self.own[f], self.total[f], self.calls[f]) for f in ordered]


def sample_functions(sample: Sample, codes: Codes) -> Optional[tuple[int, list[Function]]]:
    """A tick's pid and its stack's functions, innermost first (with --async, then those its
    task's awaiters put above them); None for other records."""
    if sample.kind != SAMPLE_CPU:
        return None
    functions = []
    for code_id, _ in sample.frames:
        code = codes.get(code_id) if code_id else None
        if code is None:
            frame = UNREADABLE_CODE if not code_id else UNANNOUNCED_CODE
            functions.append((sample.pid, frame.function, "", 0))
        else:
            functions.append((sample.pid, code.function, code.file, code.first_line))
    functions += [(sample.pid, frame.function, frame.file, frame.line) for frame in sample.above]
    return sample.pid, functions


class Top(Consumer):
    interval = TICK
    unit = "samples"

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
        self._current = Interval()
        self._run = Interval()  # every interval so far: the table top ends with
        self.samples = 0
        self._counting = any(session.program.placements)
        self._exited: Counter = Counter()  # counts of processes that exited, for the next table
        # The screen starts at the first tick, after the announcement: what goes to stderr
        # before it stays on the terminal's own screen, never under curses' drawing.
        self._live = out.isatty() and not options.json and not options.once
        self.screen = self._live  # the Pythons found as it runs are in its table, not told on stderr
        self._screen: Optional[Screen] = None
        self.writes_stdout = out.isatty()  # its tables (or screen) on the terminal: no status line over them
        self._tasks: Optional[TaskJoin] = None
        if options.async_tasks:
            read = task_reader(session.walker.registered.get, session.sampling.qualnames)
            self._tasks = TaskJoin(read, session.codes, lines=False)

    def feed(self, records: list[bytes]) -> None:
        self.samples += len(records)
        if self._tasks is None:
            self._count(map(unpack, records))
            return
        self._tasks.hold(records)
        if self._tasks.due():
            self._count(self._tasks.release())

    def _count(self, samples: Iterable[Sample]) -> None:
        interval = self._current
        for sample in samples:
            found = sample_functions(sample, self.session.codes)
            if found is None:
                continue
            _, functions = found
            interval.samples += 1
            if functions:
                interval.own[functions[0]] += 1
            for function in set(functions):
                interval.total[function] += 1

    def collect_calls(self, everything: bool = False) -> Counter:
        """The entries counted since the last collection: switch generations, then read and
        delete the old one's counts (an entry that read the generation just before the
        switch lands in it a moment later, and is read with it next time). `everything`:
        once tracing is off, both generations."""
        calls: Counter = Counter()
        if not self._counting:
            return calls
        old = self._generation
        self._generation ^= 1
        configure(self.session, self._generation)
        calls, self._exited = self._exited + self._take(lambda key: everything or key.generation == old), Counter()
        return +calls  # without the rows that came to zero

    def on_exits(self, processes: set[Process]) -> None:
        """Their counts are taken now, while their code objects are known, for the next table
        (and with --async their samples held, joined with the last snapshot of their tasks)."""
        if self._tasks is not None:
            self._count(self._tasks.release(gone={pid for pid, _ in processes}))
        self._exited.update(self._take(lambda key: (key.pid, key.incarnation) in processes))
        forget_codes(self.session, processes)

    def _take(self, wanted: Callable) -> Counter:
        """The counts whose keys are wanted (by code object, in `first`), taken out of the
        kernel's map."""
        table = self.session.program.table("counts")
        counts = list(table.items())
        self.session.rings.drain_codes()  # those of code objects announced since the last drain
        calls: Counter = Counter()
        for key, value in counts:
            if not wanted(key):
                continue
            del table[key]
            frame = code_frame(self.session.codes, key.first)
            calls[(key.pid, frame.function, frame.file, frame.line)] += signed_total(value)
        return calls

    def on_interval(self) -> bool:
        self._ticks += 1
        if self._live and not self._screen:
            self._start_screen()
        if self._screen and self._screen.quit_pressed():
            return True
        if self._ticks % self._per_refresh:
            return False
        self._show_interval()
        return self._options.once

    def _start_screen(self) -> None:
        self._screen = Screen()
        self._screen.draw(f"{time.strftime('%H:%M:%S')}  the first table in {self._options.interval:g} s  (q to quit)",
                          [])

    def _show_interval(self) -> None:
        if self._tasks is not None and self._tasks.due(every=0):  # the table shows what was held
            self._count(self._tasks.release())
        interval, self._current = self._current, Interval()
        interval.calls = self.collect_calls()
        self._run.add(interval)
        now = time.monotonic()
        seconds, self._since = now - self._since, now
        self._show(interval, f"in the last {seconds:.2f} s", seconds)

    def _show(self, interval: Interval, covers: str, seconds: float) -> None:
        """A table (or JSON record) of the interval; covers: the time it covers, in words."""
        self._shown = True
        rows = interval.rows(self._options.sort, self._screen.rows() if self._screen else self._options.top)
        title = f"{time.strftime('%H:%M:%S')}  {interval.samples} samples {covers}"
        if not self._counting:
            selection = self.session.selection
            title += (" (calls not counted)" if not self._options.calls
                      else DESCENDANTS_NOT_COUNTED if selection is not None and selection.roots else NOT_COUNTED)
        if self._screen:
            self._screen.draw(title + "  (q to quit)", table(rows, interval.samples, self._options.rate, self._counting))
        elif self._options.json:
            self._out.write(json.dumps(interval_json(interval, rows, seconds, self._options, self._counting)) + "\n")
        else:
            self._out.write("\n".join([title, *table(rows, interval.samples, self._options.rate, self._counting)])
                            + "\n\n")
        self._out.flush()

    def finish(self, summary: Summary) -> None:
        """The screen goes; the tables end with the whole run's (--json: its records add up to
        the run, the last one the unfinished interval's, when it saw anything)."""
        self.close()
        summary.unit = self.unit
        summary.events = self.samples
        if self._tasks is not None:
            self._count(self._tasks.release())
            summary.notes += self._tasks.counts.notes()
        if self._options.once and self._shown:
            return
        rest, self._current = self._current, Interval()
        rest.calls = self.collect_calls(everything=True)
        self._run.add(rest)
        if not self._options.json:
            self._show(self._run, f"in the whole run of {summary.seconds:.2f} s", summary.seconds)
        elif rest.samples or rest.calls or not self._shown:
            seconds = self.session.start / 1e9 + summary.seconds - self._since
            self._show(rest, f"in the last {seconds:.2f} s", seconds)

    def writing(self) -> str:
        return f"a table every {self._options.interval:g} s"

    def close(self) -> None:
        self._live = self.screen = False
        if self._screen:
            self._screen.close()
            self._screen = None


def share(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def table(rows, samples: int, rate: int, counting: bool) -> list[str]:
    """%OWN and %TOTAL of the interval's samples; OWN and TOTAL as time (samples / rate)."""
    calls = f" {'CALLS':>10}" if counting else ""
    lines = [f"{'PID':>8} {'%OWN':>6} {'%TOTAL':>6} {'OWN(s)':>8} {'TOTAL(s)':>8}{calls}  FUNCTION (FILE:LINE)"]
    for (pid, function, file, line), own, total, count in rows:
        where = f" ({shown(file)}:{line})" if file else ""
        calls = f" {count:>10}" if counting else ""
        lines.append(f"{pid:>8} {share(own, samples):>6.1f} {share(total, samples):>6.1f} {own / rate:>8.2f} "
                     f"{total / rate:>8.2f}{calls}  {shown(function)}{where}")
    return lines


def interval_json(interval: Interval, rows, seconds: float, options: TopOptions, counting: bool) -> dict:
    functions = []
    for (pid, function, file, line), own, total, count in rows:
        row = {"pid": pid, "function": function, "file": file or None, "line": line or None, "own": own,
               "total": total, "own_share": round(share(own, interval.samples), 3),
               "total_share": round(share(total, interval.samples), 3)}
        if counting:
            row["calls"] = count
        functions.append(row)
    return {"time": time.time(), "seconds": round(seconds, 3), "samples": interval.samples, "rate": options.rate,
            "functions": functions}


def configure(session: Session, generation: int = 0) -> None:
    """Where entries count."""
    table = session.program.table("top_settings")
    value = table.Leaf()
    value.generation = generation
    table[table.Key(0)] = value


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
            self._window.addnstr(row, 0, shown(text), width - 1, curses.A_BOLD if row in (0, 2) else 0)
        self._window.refresh()

    def close(self) -> None:
        curses.nocbreak()
        self._window.keypad(False)
        curses.echo()
        curses.endwin()


def run(options: TopOptions) -> int:
    out = options.output or sys.stdout
    return run_tool("top", SPEC, None, options.trace, lambda session: Top(session, options, out), configure,
                    sampling=Sampling(rate=options.rate, linetables=options.calls, gil_only=options.gil_only,
                                      async_tasks=options.async_tasks),
                    probes=ENTRY_PROBES if options.calls else ())
