"""Processes that exit while traced: found every second, and done with once every event they
sent is consumed, so that what is kept of them (in the kernel's maps, in the tracer's memory)
goes as they go, however many come and go."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .events import Process

if TYPE_CHECKING:
    from .consumer import Consumer
    from .rings import SessionRings

# How often at most an exited process's part is taken (which reads a whole map: with --all
# on a busy machine, that is every Python's).
TAKE_SECONDS = 10.0


class Exits:
    """The exited processes of a trace: those whose names or code objects are held, whose
    incarnation the kernel has dropped (lifetimes.h)."""

    def __init__(self, program, rings: "SessionRings", follows_calls: bool = False):
        self._program = program
        self._rings = rings
        # a program that follows calls gives each process an incarnation at its first event:
        # what is held of no incarnation (0) was drained after its process had gone (a walk's
        # code objects), or its process found the incarnations map full
        self._follows_calls = follows_calls
        self._taken = 0.0  # when exited processes were last taken (time.monotonic)
        self._exiting: set[Process] = set()  # exited, their events not all consumed yet
        self._pending: list[tuple[int, set[Process]]] = []  # (events ring position, processes)

    def sweep(self) -> None:
        """Find the processes that exited. They are done with once every event they sent is
        consumed (the events ring's position now)."""
        known = self._rings.names.processes() | self._rings.codes.processes()
        held = {process for process in known if process[1] or self._follows_calls} - self._exiting
        if not held:
            return
        live = {(key.value, value.value) for key, value in self._program.table("incarnations").items()}
        live_pids = {pid for pid, _ in live}
        exited = {process for process in held - live
                  if process[1] or (process[0] not in live_pids and not _running(process[0]))}
        if exited:
            self._pending.append((self._rings.producer_position(), exited))
            self._exiting |= exited

    def finish(self, consumer: "Consumer", last: bool = False) -> None:
        """The exited processes whose events are all consumed: the consumer takes its part,
        then their names go (all of theirs are drained first: they were sent before they
        exited, but a tracer that was stopped has not read them all yet). last: tracing is
        off and every event consumed."""
        if last:
            self.sweep()
        now = time.monotonic()
        if not last and now < self._taken + TAKE_SECONDS:
            return
        self._taken = now
        consumed = self._rings.consumer_position()
        if self._pending and self._pending[0][0] <= consumed:
            self._rings.drain_names()
        while self._pending and self._pending[0][0] <= consumed:
            _, exited = self._pending.pop(0)
            consumer.on_exits(exited)
            for process in exited:
                self._rings.names.forget(process)
            self._exiting -= exited


def _running(pid: int) -> bool:
    """Whether a process of this PID runs (it may be a later one: what is held of no
    incarnation then waits for that one's end, bounded all the same)."""
    return os.path.exists(f"/proc/{pid}")
