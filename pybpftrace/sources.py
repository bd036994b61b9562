"""First lines of functions, from the traced process's source files.

A fresh call reports the function's first line (its `def`, or its first decorator), but a
generator or coroutine resuming reports the line it resumes at. Folded stacks name a frame by
its first line so that both merge; the source tells which `def NAME` a line falls under.
"""

from __future__ import annotations

import bisect
import os
import re
from typing import Optional

_DEFINITION = re.compile(r"^([ \t]*)(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)", re.MULTILINE)
_DECORATOR = re.compile(r"^[ \t]*@")


def first_lines(source: str) -> dict[str, list[int]]:
    """Each def or class name and, sorted, the first line (decorators included) of each of
    its definitions."""
    lines = source.splitlines()
    found: dict[str, list[int]] = {}
    for match in _DEFINITION.finditer(source):
        number = source.count("\n", 0, match.start())  # 0-based
        while number > 0 and _DECORATOR.match(lines[number - 1]):
            number -= 1
        found.setdefault(match.group(2), []).append(number + 1)
    for numbers in found.values():
        numbers.sort()
    return found


class FirstLines:
    """Resolves (pid, file, function, line) to the function's first line. Each process's root
    and working directory are held open from the start, so its files stay reachable (through
    a container's root too) after it exits."""

    def __init__(self) -> None:
        self._roots: dict[int, tuple[int, int]] = {}
        self._files: dict[tuple[int, str], dict[str, list[int]]] = {}
        self._watched: set[int] = set()

    def watch(self, pid: int, root: str = "", cwd: str = "") -> None:
        """Keep pid's files reachable: through /proc/PID unless root and cwd are given."""
        self.forget(pid)
        self._watched.add(pid)
        try:
            self._roots[pid] = (
                os.open(root or f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                os.open(cwd or f"/proc/{pid}/cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
            )
        except OSError:
            pass  # gone already: its lines stay as reported

    def _read(self, pid: int, file: str) -> dict[str, list[int]]:
        key = (pid, file)
        if key not in self._files:
            self._files[key] = {}
            if pid in self._roots:
                root, cwd = self._roots[pid]
                directory, relative = (root, file.lstrip("/")) if file.startswith("/") else (cwd, file)
                try:
                    fd = os.open(relative, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
                    with open(fd, "rb") as stream:
                        self._files[key] = first_lines(stream.read(1 << 24).decode("utf-8", "replace"))
                except (OSError, ValueError):
                    pass
        return self._files[key]

    def __contains__(self, pid: int) -> bool:
        return pid in self._watched

    def resolve(self, pid: int, file: str, function: str, line: int) -> Optional[int]:
        """The first line of the definition of `function` that `line` falls in, or None
        when the source does not tell (no such file, no such def, a lambda)."""
        starts = self._read(pid, file).get(function)
        if not starts:
            return None
        if line < 1:  # CPython 3.15 reports -1 for a closure's entry: no line yet
            return starts[0] if len(starts) == 1 else None
        index = bisect.bisect_right(starts, line) - 1
        return starts[index] if index >= 0 else None

    def forget(self, pid: int) -> None:
        """Let go of an exited process's files (its PID may be another's next)."""
        self._watched.discard(pid)
        for fd in self._roots.pop(pid, ()):
            os.close(fd)
        for key in [key for key in self._files if key[0] == pid]:
            del self._files[key]

    def close(self) -> None:
        for root, cwd in self._roots.values():
            os.close(root)
            os.close(cwd)
        self._roots.clear()
