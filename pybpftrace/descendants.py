"""A process's children and their children, now, from /proc (each thread's `children`): the
processes `--subprocesses` looks at besides those named. Bounded: a tree larger than
DESCENDANTS_MAX is cut there, and said."""

from __future__ import annotations

import os

from .target import thread_file

DESCENDANTS_MAX = 4096
TASKS_MAX = 65536


def children(pid: int) -> list[int]:
    """The processes pid forked, by any of its threads."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")[:TASKS_MAX]
    except OSError:
        return []
    found = []
    for task in tasks:
        if task.isdigit():
            found += [int(child) for child in (thread_file(pid, int(task), "children") or "").split() if child.isdigit()]
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
