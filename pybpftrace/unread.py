"""Processes that started a program and were gone before user space could look at what it
runs: a Python among them is missing from what was read, and the summary says so, naming what
they exec'd (the kernel's exec event carries the path). Under roots (a launched command,
--subprocesses) the processes counted are the roots' descendants, a tree kept here from the
kernel's fork events (a gone process's parent can no longer be read); with --binary or --all,
those whose program is named like a Python that would have been read."""

from __future__ import annotations

import os
from collections import Counter
from typing import Callable, Iterable

from .escaping import shown
from .target import process_exists

PROGRAMS_NAMED = 3  # the most frequent programs the note names; the rest are counted
TREE_PRUNE_AT = 65536  # members at which those that exited are let go (ProcessTree)
PROGRAMS_KEPT = 1024  # distinct programs counted by name: a tree that execs ever new paths is bounded


class ProcessTree:
    """The roots and every process forked under them since: a PID reused by a process born
    elsewhere leaves it. Bounded: once they are prune_at or more (and twice as many as were
    left the last time), those that have exited are set apart, members still until the next
    pruning, by when the exec events queued before this one have long been read."""

    def __init__(self, roots: Iterable[int], alive: Callable[[int], bool] = process_exists,
                 prune_at: int = TREE_PRUNE_AT):
        self._members = set(roots)
        self._alive = alive
        self._least = self._prune_at = prune_at
        self._gone: set[int] = set()  # exited, found so at the last pruning

    def add(self, pids: Iterable[int]) -> None:
        """Processes known to descend from the roots (read from /proc)."""
        self._members.update(pids)

    def born(self, child: int, parent: int) -> None:
        if parent not in self:
            self._members.discard(child)
            self._gone.discard(child)
            return
        self._members.add(child)
        if len(self._members) >= self._prune_at:
            alive = {pid for pid in self._members if self._alive(pid)}
            self._gone = self._members - alive
            self._members = alive
            self._prune_at = max(self._least, 2 * len(alive))

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, pid: int) -> bool:
        return pid in self._members or pid in self._gone


def program_name(raw: bytes) -> str:
    """The path an exec event carries, up to its NUL (cut by the kernel where long)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def looks_like_python(program: str, names: frozenset[str]) -> bool:
    """Whether a program's name is one of names (the selected interpreters' file names), or,
    where none are given, starts with `python`."""
    base = os.path.basename(program)
    return base in names if names else base.startswith("python")


class Unread:
    """The programs of processes gone before they were looked at, counted."""

    def __init__(self) -> None:
        self._programs: Counter[str] = Counter()
        self._unnamed = 0  # those past PROGRAMS_KEPT distinct programs

    def add(self, program: str) -> None:
        program = program or "?"
        if program in self._programs or len(self._programs) < PROGRAMS_KEPT:
            self._programs[program] += 1
        else:
            self._unnamed += 1

    def __len__(self) -> int:
        return sum(self._programs.values()) + self._unnamed

    def notes(self) -> list[str]:
        if not self._programs:
            return []
        ranked = self._programs.most_common()
        named = [f"{shown(program)} ×{n}" if n > 1 else shown(program) for program, n in ranked[:PROGRAMS_NAMED]]
        rest = sum(n for _, n in ranked[PROGRAMS_NAMED:]) + self._unnamed
        if rest:
            named.append(f"{rest} more")
        total = len(self)
        if total == 1:
            return [f"1 process exited before pybpftrace could see what it ran ({named[0]}): "
                    "if it was a Python, its stacks are not read"]
        return [f"{total} processes exited before pybpftrace could see what they ran ({', '.join(named)}): "
                "the stacks of any Python among them are not read"]
