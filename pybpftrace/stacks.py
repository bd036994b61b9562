"""Per-thread call stacks rebuilt from entry and return events.

The kernel numbers each event with its thread's call depth, counted from where the thread was
when tracing began, so pairing needs no guessing even when events were lost or filtered out:
a return at depth d closes the open call at depth d. A return below every open call belongs to
a call that began before tracing (attaching mid-stack): its depth is negative. A return also
fires when an exception unwinds a frame, and at every suspension of a generator or coroutine,
so each resumption is a call of its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from .events import EVENT_CALL, EVENT_CREATED, CallEvent
from .formats import model


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


@dataclass
class _Timed:
    open: list[tuple[int, model.Frame, int]] = field(default_factory=list)  # (depth, frame, begin)
    marks: list[tuple[int, int]] = field(default_factory=list)  # (depth, time): see Spans.feed
    last: int = 0  # the time of its last event


class Spans:
    """Each call as a span of a timeline, from its entry to its return, per thread, nested by
    the depths the kernel numbers events with. A bound that was not seen is the nearest event
    that bounds it, and the span says so: a return without its entry began after the thread's
    last event at its depth or shallower (or before tracing, where there was none); a call
    whose return was lost ended by the thread's last event before the shallower return that
    shows it; a call still running ends with tracing."""

    def __init__(self, timeline: model.Timeline, start: int, frame: Callable[[CallEvent], model.Frame],
                 thread: Callable[[int, int], model.Thread]):
        self.timeline = timeline
        self._start = start
        self._frame = frame
        self._thread = thread
        self._threads: dict[int, _Timed] = {}

    def feed(self, event: CallEvent) -> None:
        timed = self._threads.get(event.tid)
        if timed is None:
            timed = self._threads[event.tid] = _Timed()
            self.timeline.threads[event.tid] = self._thread(event.pid, event.tid)
        at, depth, add = event.timestamp - self._start, event.depth, self.timeline.add
        if event.kind == EVENT_CALL:
            timed.open.append((depth, self._frame(event), at))
        else:
            while timed.open and timed.open[-1][0] > depth:
                lost_depth, frame, begin = timed.open.pop()
                add(event.tid, model.Span(frame, begin, timed.last, lost_depth, model.RETURN_NOT_SEEN))
            if timed.open and timed.open[-1][0] == depth:
                _, frame, begin = timed.open.pop()
                add(event.tid, model.Span(frame, begin, at, depth))
            else:
                bound = next((time for mark_depth, time in reversed(timed.marks) if mark_depth <= depth), None)
                inexact = model.BEGAN_BEFORE_TRACING if bound is None else model.ENTRY_NOT_SEEN
                add(event.tid, model.Span(self._frame(event), bound or 0, at, depth, inexact))
        # The marks hold, by increasing depth, the latest event at each depth or shallower.
        while timed.marks and timed.marks[-1][0] >= depth:
            timed.marks.pop()
        timed.marks.append((depth, at))
        timed.last = at

    def finish(self, end: int) -> model.Timeline:
        """Close the calls still running at `end` (ns since tracing began)."""
        for tid, timed in self._threads.items():
            while timed.open:
                depth, frame, begin = timed.open.pop()
                self.timeline.add(tid, model.Span(frame, begin, max(end, timed.last), depth, model.STILL_RUNNING))
        return self.timeline


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
    samples: int = 0  # sampled stacks that ended here


@dataclass(frozen=True)
class KernelNode:
    """A call path as the kernel keeps it (struct call_node), names resolved."""

    parent: int
    frame: Frame
    self_ns: int
    calls: int
    pid: int


@dataclass(frozen=True)
class KernelRoot:
    """The frames a thread was in when tracing began (struct call_root): named once its frame
    returned, with the root above it as parent."""

    parent: int
    frame: Optional[Frame]
    self_ns: int
    pid: int
    tid: int


@dataclass(frozen=True)
class OpenFrame:
    """A call still running when tracing ended (the kernel's shadow stack)."""

    node: int  # 0: a call whose path the kernel could not keep
    start: int
    callees: int


@dataclass
class CallTree:
    """One thread's calls merged by path, with the time each path spent on top of the stack
    (self time, wall clock) and how many calls it made."""

    pid: int
    root: Node


def build_call_trees(
    kernel_nodes: dict[int, KernelNode],
    kernel_roots: dict[int, KernelRoot],
    running: dict[int, tuple[int, int, list[OpenFrame]]],
    end: int,
) -> dict[int, CallTree]:
    """Per thread, the call tree the kernel kept. running: per thread, (its current root, since
    when it has been idle in it, its open calls outermost first), whose time up to `end` is
    charged here: the kernel charges a call only when it returns."""
    extra: dict[int, int] = {}
    for tid, (root, idle, open_frames) in running.items():
        if not open_frames:
            extra[root] = extra.get(root, 0) + end - idle
        for frame, inner in zip(open_frames, open_frames[1:] + [None]):
            if frame.node:
                until = inner.start if inner else end
                extra[frame.node] = extra.get(frame.node, 0) + until - frame.start - frame.callees
    children: dict[int, list[int]] = defaultdict(list)
    for node_id, node in kernel_nodes.items():
        children[node.parent].append(node_id)
    for root_id, root in kernel_roots.items():
        if root.parent in kernel_roots:
            children[root.parent].append(root_id)

    def make(record_id: int) -> Node:
        extra_ns = extra.get(record_id, 0)
        if record_id in kernel_roots:
            root = kernel_roots[record_id]
            return Node(root.frame, self_ns=root.self_ns + extra_ns, calls=1 if root.frame else 0)
        node = kernel_nodes[record_id]
        return Node(node.frame, self_ns=node.self_ns + extra_ns, calls=node.calls)

    trees: dict[int, CallTree] = {}
    for root_id, root in kernel_roots.items():
        if root.parent in kernel_roots:
            continue  # below another root
        top = make(root_id)
        trees[root.tid] = CallTree(root.pid, top)
        pending = [(root_id, top)]  # iteratively: trees can be deep
        while pending:
            record_id, node = pending.pop()
            for child_id in children[record_id]:
                pending.append((child_id, _adopt(node, make(child_id))))
    return trees


def _adopt(parent: Node, child: Node) -> Node:
    """Attach child (still without children of its own), merging it into a sibling with the
    same frame (two code objects can have the same names: code run by exec, a reloaded
    module); the node the child's own children go under."""
    sibling = parent.children.get(child.frame)
    if sibling is None:
        parent.children[child.frame] = child
        return child
    sibling.self_ns += child.self_ns
    sibling.calls += child.calls
    return sibling


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
