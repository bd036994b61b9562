"""A process's children and their children, now, from /proc (each thread's `children`): the
processes `--subprocesses` looks at besides those named. Bounded: a tree larger than
DESCENDANTS_MAX is cut there, and said."""

from __future__ import annotations

from .target import thread_file, thread_ids, thread_stat

DESCENDANTS_MAX = 4096
ANCESTORS_MAX = 256  # parents followed up from a process: deeper trees are not looked into


def children(pid: int) -> list[int]:
    """The processes pid forked, by any of its threads."""
    found = []
    for tid in thread_ids(pid):
        found += [int(child) for child in (thread_file(pid, tid, "children") or "").split() if child.isdigit()]
    return found


def descendants(pid: int) -> tuple[list[int], bool]:
    """pid's descendants, nearest first, and whether there were more than DESCENDANTS_MAX (the
    rest left out). A PID seen twice (reused while the tree was read) is taken once."""
    found: list[int] = []
    seen = {pid}
    queue = [pid]
    while queue:
        for child in children(queue.pop(0)):
            if child in seen:
                continue
            if len(found) == DESCENDANTS_MAX:
                return found, True
            seen.add(child)
            found.append(child)
            queue.append(child)
    return found, False


def parent(pid: int) -> int:
    """pid's parent (0 once gone, or for the first process)."""
    fields = thread_stat(pid, pid)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def descends_from(pid: int, roots: frozenset[int]) -> bool:
    """Whether pid is one of roots or descends from one (its parents followed up, at most
    ANCESTORS_MAX)."""
    for _ in range(ANCESTORS_MAX):
        if pid in roots:
            return True
        pid = parent(pid)
        if pid <= 1:
            return pid in roots
    return False
