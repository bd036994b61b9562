"""Per-thread call stacks rebuilt from entry and return events.

The kernel numbers each event with its thread's depth, counted from the shallowest frame seen
since tracing began, so pairing needs no guessing even when events were lost or filtered:
a return at depth d closes the open call at depth d. A return with no open call at its depth
belongs to a call that began before tracing (attaching mid-stack); a return also fires when an
exception unwinds a frame, and for every suspension of a generator or coroutine, so each
resumption is a call of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from .events import EVENT_CALL, CallEvent


class Pairing:
    """Matches returns with their calls, per thread, to give each return its call's duration."""

    def __init__(self) -> None:
        self._open: dict[int, list[tuple[int, int]]] = {}  # tid -> [(depth, start)]

    def feed(self, event: CallEvent) -> Optional[int]:
        """The duration in ns of the call a return ends, if its entry was seen."""
        stack = self._open.setdefault(event.tid, [])
        if event.kind == EVENT_CALL:
            stack.append((event.depth, event.timestamp))
            return None
        while stack and stack[-1][0] > event.depth:  # calls whose returns were lost
            stack.pop()
        if stack and stack[-1][0] == event.depth:
            return event.timestamp - stack.pop()[1]
        return None


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

    def __init__(self, start: int):
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
        if self._stack and self._stack[-1][1] == event.depth:
            self._stack.pop()
            return
        # A call that began before tracing returned: it was the unnamed root; name it and
        # put a new unnamed root (its caller) above it.
        named = self.root
        named.frame = Frame(event.function, event.file, event.line, entered=False)
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
            tree = self.threads[event.tid] = CallTree(self.start)
        tree.feed(event)

    def finish(self, end: int) -> None:
        for tree in self.threads.values():
            tree.finish(end)


def walk(node: Node, path: tuple[Frame, ...] = ()) -> Iterator[tuple[tuple[Frame, ...], Node]]:
    """Every named node under node with its path of frames, depth first (iteratively: call
    trees can be deeper than Python's recursion limit)."""
    pending = [(node, path)]
    while pending:
        current, current_path = pending.pop()
        if current.frame is not None:
            current_path = current_path + (current.frame,)
            yield current_path, current
        for child in reversed(list(current.children.values())):
            pending.append((child, current_path))
