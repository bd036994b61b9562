"""Per-thread call stacks rebuilt from entry and return events.

The kernel numbers each event with its thread's call depth, counted from where the thread was
when tracing began, so pairing needs no guessing even when events were lost or filtered out:
a return at depth d closes the open call at depth d. A return below every open call belongs to
a call that began before tracing (attaching mid-stack): its depth is negative. A return also
fires when an exception unwinds a frame, and at every suspension of a generator or coroutine,
so each resumption is a call of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from .events import EVENT_CALL, EVENT_CREATED, CallEvent


class Creations:
    """Takes back the entries CPython 3.15 fires when it creates a generator or coroutine
    (which never return): the kernel follows each such entry with a `created` event on the
    same thread. A thread's latest entry is held until its next event tells which it was."""

    def __init__(self) -> None:
        self._held: dict[int, CallEvent] = {}

    def feed(self, event: CallEvent) -> list[CallEvent]:
        """The events now known to be real, in order."""
        held = self._held.pop(event.tid, None)
        if event.kind == EVENT_CREATED:
            return []  # the held entry was a creation (or was filtered out in the kernel)
        if event.kind == EVENT_CALL:
            self._held[event.tid] = event
            return [held] if held else []
        return [held, event] if held else [event]

    def flush(self) -> list[CallEvent]:
        """The entries still held at the end of tracing."""
        held = sorted(self._held.values(), key=lambda event: event.timestamp)
        self._held.clear()
        return held


@dataclass
class _Thread:
    open: list[tuple[int, int]] = field(default_factory=list)  # (depth, start) of open calls
    floor: int = 0  # the shallowest depth seen


class Pairing:
    """Matches returns with their calls, per thread: each return gets its call's duration, and
    each event an indentation counted from the shallowest frame its thread has shown so far
    (a stream cannot go back and indent what it printed before a shallower frame appeared)."""

    def __init__(self) -> None:
        self._threads: dict[int, _Thread] = {}

    def feed(self, event: CallEvent) -> tuple[int, Optional[int]]:
        """(indentation, duration in ns of the call a return ends if its entry was seen)."""
        thread = self._threads.get(event.tid)
        if thread is None:
            thread = self._threads[event.tid] = _Thread()
        thread.floor = min(thread.floor, event.depth)
        indent = event.depth - thread.floor
        stack = thread.open
        if event.kind == EVENT_CALL:
            stack.append((event.depth, event.timestamp))
            return indent, None
        while stack and stack[-1][0] > event.depth:  # calls whose returns were lost
            stack.pop()
        if stack and stack[-1][0] == event.depth:
            return indent, event.timestamp - stack.pop()[1]
        return indent, None


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int  # the function's first line; for a call seen only returning, the return's line
    entered: bool = True  # False for calls seen only returning


@dataclass
class Node:
    """A call path in a call tree: every call of `frame` made from the same path."""

    frame: Optional[Frame]  # None: the frames that were running before tracing began
    children: dict[Frame, "Node"] = field(default_factory=dict)
    self_ns: int = 0
    calls: int = 0

    def child(self, frame: Frame) -> "Node":
        node = self.children.get(frame)
        if node is None:
            node = self.children[frame] = Node(frame)
        return node


class CallTree:
    """One thread's calls merged by path, with the time each path spent on top of the stack
    (self time, wall clock) and how many calls it made."""

    def __init__(self, pid: int, start: int):
        self.pid = pid
        self.root = Node(None)
        self._stack: list[tuple[Node, int]] = []  # open calls: (node, depth)
        self._last = start

    def _top(self) -> Node:
        return self._stack[-1][0] if self._stack else self.root

    def _advance(self, now: int) -> None:
        self._top().self_ns += max(0, now - self._last)
        self._last = max(self._last, now)

    def feed(self, event: CallEvent) -> None:
        self._advance(event.timestamp)
        if event.kind == EVENT_CALL:
            while self._stack and self._stack[-1][1] >= event.depth:  # returns lost
                self._stack.pop()
            node = self._top().child(Frame(event.function, event.file, event.line))
            node.calls += 1
            self._stack.append((node, event.depth))
            return
        while self._stack and self._stack[-1][1] > event.depth:
            self._stack.pop()
        frame = Frame(event.function, event.file, event.line, entered=False)
        if self._stack and self._stack[-1][1] == event.depth:
            self._stack.pop()
            return
        if self._stack:  # its entry was lost: count the call, its time stays with its caller
            self._top().child(frame).calls += 1
            return
        # A call that began before tracing returned: it was the unnamed root; name it and
        # put a new unnamed root (its caller) above it.
        named = self.root
        named.frame = frame
        named.calls += 1
        self.root = Node(None, children={named.frame: named})
        self._stack = []

    def finish(self, end: int) -> None:
        """Charge the time up to the end of tracing to the call still running."""
        self._advance(end)


class CallTrees:
    """A call tree per thread, fed with events in order."""

    def __init__(self, start: int):
        self.start = start
        self.threads: dict[int, CallTree] = {}

    def feed(self, event: CallEvent) -> None:
        tree = self.threads.get(event.tid)
        if tree is None:
            tree = self.threads[event.tid] = CallTree(event.pid, self.start)
        tree.feed(event)

    def finish(self, end: int) -> None:
        for tree in self.threads.values():
            tree.finish(end)


def nodes(root: Node) -> Iterator[Node]:
    """Every named node under root."""
    pending = [root]
    while pending:
        node = pending.pop()
        if node.frame is not None:
            yield node
        pending.extend(node.children.values())


def weighted_paths(root: Node, weight: Callable[[Node], int]) -> Iterator[tuple[list[Frame], int]]:
    """Each named node of non-zero weight, with the frames from the root down to it, depth
    first and iteratively (trees can be deeper than Python's recursion limit). The list is
    reused from one step to the next: read it before asking for the next."""
    path: list[Frame] = []
    pending = [(root, 0)]
    while pending:
        node, depth = pending.pop()
        del path[depth:]
        if node.frame is not None:
            path.append(node.frame)
            value = weight(node)
            if value:
                yield path, value
        pending.extend((child, len(path)) for child in reversed(node.children.values()))
