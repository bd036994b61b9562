"""pybpftrace's command line with the time of each phase of its start and stop measured:
`python -m bench.phases ARGS...` runs `pybpftrace ARGS...` unchanged, with thin wrappers
around the functions each phase runs in, and writes what they measured as JSON to the file
$BENCH_PHASES names. bench/startup.py runs the commands so.

A phase's time is exclusive (a wrapped call inside another counts to its own phase only);
a call made after tracing was announced counts to the stop. $BENCH_LAUNCHED (monotonic ns,
a clock every process shares) is when the harness launched this process: what comes before
the command line's module is imported (the interpreter's start and the imports) is the
time from then."""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import time
from collections import defaultdict
from typing import Callable

PHASES = ("imports", "bcc import", "ELF reading", "compile", "kernel load", "attach", "uprobes closed",
          "bcc cleanup")


class Clock:
    """Exclusive seconds per phase, before and after the announcement, and its time."""

    def __init__(self) -> None:
        self.start: dict[str, float] = defaultdict(float)
        self.stop: dict[str, float] = defaultdict(float)
        self.announced: float = 0.0  # monotonic seconds
        self.deadline: float = 0.0  # when --duration ended (monotonic seconds)
        self._nested: list[float] = []  # per open call: the time its wrapped callees took

    def timed(self, phase: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.monotonic()
            self._nested.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.monotonic() - started
                inner = self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed
                (self.stop if self.announced else self.start)[phase] += elapsed - inner
        return wrapper

    def wrap(self, owner, name: str, phase: str) -> None:
        setattr(owner, name, self.timed(phase, getattr(owner, name)))

    def to_json(self) -> dict:
        return {"start": self.start, "stop": self.stop, "announced": self.announced, "deadline": self.deadline}


def instrument(clock: Clock) -> None:
    """Wrap what each phase runs: bcc's, once pybpftrace imports it."""
    from pybpftrace import attach, iterator, program, session, target

    clock.wrap(target, "_read_facts", "ELF reading")
    clock.wrap(attach.Uprobes, "attach", "attach")
    clock.wrap(attach.Uprobes, "close", "uprobes closed")
    loaded = iterator.IteratorProgram.__dict__.get("fd")
    if isinstance(loaded, property):  # loaded on a thread of its own: the wait for it, on the main one
        iterator.IteratorProgram.fd = property(clock.timed("kernel load", loaded.fget))
    else:  # a pybpftrace that loads it where it is first needed
        clock.wrap(iterator, "_load_sleepable_iterator", "kernel load")
    run, announce = session.Session.run, session.Session.announce

    def timed_run(self, consumer, duration, progress=None):
        try:
            return run(self, consumer, duration, progress)
        finally:
            clock.deadline = (self.start + int((duration or 0) * 1e9)) / 1e9

    def timed_announce(self):
        clock.announced = time.monotonic()
        return announce(self)

    session.Session.run, session.Session.announce = timed_run, timed_announce
    import_bcc = program._import_bcc

    def timed_import():
        started = time.monotonic()
        bcc = import_bcc()
        if "bcc import" not in clock.start:  # the first time: bcc's own wrapped too
            clock.start["bcc import"] = time.monotonic() - started
            clock.wrap(bcc.BPF, "__init__", "compile")
            clock.wrap(bcc.BPF, "load_func", "kernel load")
            for name in ("attach_tracepoint", "attach_perf_event", "attach_raw_tracepoint"):
                clock.wrap(bcc.BPF, name, "attach")
            clock.wrap(bcc.BPF, "cleanup", "bcc cleanup")
        return bcc

    program._import_bcc = timed_import


def main() -> None:
    clock = Clock()
    from pybpftrace import cli

    clock.start["imports"] = time.monotonic() - int(os.environ["BENCH_LAUNCHED"]) / 1e9
    instrument(clock)
    path = os.environ["BENCH_PHASES"]
    atexit.register(lambda: open(path, "w").write(json.dumps(clock.to_json())))
    sys.argv = ["pybpftrace", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
