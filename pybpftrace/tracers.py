"""The pybpftrace tracers running on this machine. Each says so in a file of its own in
/run/pybpftrace/tracers (root's), named by its PID and holding its start time, so that a tracer
that finds its Pythons itself (--all, --binary, --subprocesses) leaves the others out: tracing
each other, each one's work would be the others' events, and theirs its own, without end."""

from __future__ import annotations

import atexit
import ctypes
import os
from typing import Callable, Optional

from .guardian import start_time

TRACERS = "/run/pybpftrace/tracers"
TRACERS_MAX = 256  # tracers known (and the kernel's map of them): past that, traced as any Python
TRACERS_FILES_MAX = 4 * TRACERS_MAX  # files looked at: the gone are removed as tracers start
# inotify(7): a tracer's file made (renamed into place) or removed
IN_CREATE, IN_DELETE, IN_MOVED_TO = 0x100, 0x200, 0x80
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)


def announce() -> None:
    """Say this process is a tracer, until it exits (a tracer killed leaves its file behind,
    which its start time tells apart from a later process of its PID, and the next tracer to
    announce itself removes). Where it cannot (not root: the command says so later), the
    others trace it."""
    pid = os.getpid()
    started = start_time(pid)
    path = f"{TRACERS}/{pid}"
    try:
        os.makedirs(TRACERS, mode=0o700, exist_ok=True)
        _remove_the_gone()
        fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, str(started).encode())
        finally:
            os.close(fd)
        os.replace(f"{path}.new", path)
    except OSError:
        return
    atexit.register(_withdraw, path)


def _withdraw(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_the_gone() -> None:
    """Remove the files of tracers killed before they could (theirs, or half-written ones),
    whose process is gone: left, they would take the places of running tracers. A file whose
    PID runs again, as another process, stays until that one exits (a tracer of that PID may
    be announcing itself)."""
    for name in os.listdir(TRACERS)[:TRACERS_FILES_MAX]:
        pid = name.removesuffix(".new")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _withdraw(f"{TRACERS}/{name}")


def running() -> frozenset[int]:
    """The other tracers running now: those whose file holds their process's start time."""
    try:
        names = os.listdir(TRACERS)[:TRACERS_FILES_MAX]
    except OSError:
        return frozenset()
    found = set()
    for name in filter(str.isdigit, names):
        pid = int(name)
        started = _started(f"{TRACERS}/{name}")
        if pid != os.getpid() and started is not None and started == start_time(pid):
            found.add(pid)
            if len(found) == TRACERS_MAX:
                break
    return frozenset(found)


def _started(path: str) -> int | None:
    """The start time a tracer's file holds (None if it is not a small regular file of digits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 32)
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None


class OtherTracers:
    """The other tracers a tracer that finds its Pythons leaves out, but those it was named
    (by PID): in the kernel's map of them (common.h's process_traced: no event of theirs), and
    out of the frame walker's processes (leave_out, which says which it read before). Their
    directory is watched, so that one started later is left out from the moment it says it is
    a tracer (what it ran before is its interpreter's start)."""

    def __init__(self, program, named: frozenset[int], leave_out: Callable[[frozenset[int]], list[int]]):
        self._table = program.table("tracers")
        self._named = named
        self._leave_out = leave_out
        self.pids: frozenset[int] = frozenset()
        self.fd = _watch(TRACERS)

    def sync(self) -> list[int]:
        """Look again; the PIDs the walker had read and reads no more."""
        if self.fd is not None:
            _drain(self.fd)
        now = running() - self._named
        for pid in now - self.pids:
            self._table[self._table.Key(pid)] = self._table.Leaf(1)
        for pid in self.pids - now:
            try:
                del self._table[self._table.Key(pid)]
            except KeyError:
                pass
        self.pids = now
        return self._leave_out(now)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _watch(directory: str) -> Optional[int]:
    """An inotify descriptor that is readable when a tracer comes or goes (None where there is
    no such directory: this tracer could not say it is one, and looks every second)."""
    fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    if _libc.inotify_add_watch(fd, directory.encode(), IN_CREATE | IN_DELETE | IN_MOVED_TO) < 0:
        os.close(fd)
        return None
    return fd


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
