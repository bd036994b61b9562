"""Per-thread call stacks rebuilt from entry and return events.

The kernel numbers each event with its thread's call depth, from its root: the frames a thread
was in when first seen are read from memory and come first (seeded calls, which began before
tracing), so pairing needs no guessing even when events were lost or filtered out: a return at
depth d closes the open call at depth d. A return below every open call belongs to a call that
began before tracing whose frame could not be read: its depth is negative. A return also fires
when an exception unwinds a frame, and at every suspension of a generator or coroutine, so each
resumption is a call of its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator, NamedTuple, Optional

from .events import CALL_ENTRY_UNSEEN, CALL_INEXACT, EVENT_CALL, EVENT_CREATED, CallEvent, Process

CALL_SEEDED = 1 << 8  # (user space's own flag) a frame its thread was in when first seen
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
    process: Process
    open: list[tuple[int, int, int]] = field(default_factory=list)  # (depth, start, flags) of open calls
    floor: int = 0  # the shallowest depth seen


# Why a call or a return has no exact duration, as the text says it.
BEGAN_BEFORE = "began before tracing"
ENTRY_UNSEEN = "entry not seen"
RETURN_LATE = "return seen late"
ENTRY_LATE = "entry seen late"


class Paired(NamedTuple):  # a tuple: one is made per event, and a frozen dataclass costs a microsecond
    """An event's place in its thread's stack: its indentation; for a return, its call's
    duration where both ends were seen (inexact: one of them was seen late, the duration is a
    bound); why not, or why not exactly (BEGAN_BEFORE, ...)."""

    indent: int
    duration: Optional[int] = None
    why: str = ""
    inexact: bool = False


class Pairing:
    """Matches returns with their calls, per thread: each return gets its call's duration, and
    each event an indentation counted from the shallowest frame its thread has shown so far
    (a stream cannot go back and indent what it printed before a shallower frame appeared).
    A thread id the kernel saw anew (event.fresh: it may have been another thread's) starts
    afresh; the threads of processes that exited go (forget)."""

    def __init__(self) -> None:
        self._threads: dict[int, _Thread] = {}

    def feed(self, event: CallEvent) -> Paired:
        thread = self._threads.get(event.tid)
        if thread is None or event.fresh:
            thread = self._threads[event.tid] = _Thread((event.pid, event.incarnation))
        thread.floor = min(thread.floor, event.depth)
        indent = event.depth - thread.floor
        stack = thread.open
        if event.kind == EVENT_CALL:
            stack.append((event.depth, event.timestamp, event.flags))
            if event.flags & CALL_SEEDED:
                return Paired(indent, why=BEGAN_BEFORE)
            return Paired(indent, why=ENTRY_LATE) if event.flags & CALL_INEXACT else Paired(indent)
        while stack and stack[-1][0] > event.depth:  # calls whose returns were lost
            stack.pop()
        if event.flags & CALL_ENTRY_UNSEEN:
            return Paired(indent, why=ENTRY_UNSEEN if indent else BEGAN_BEFORE)
        if stack and stack[-1][0] == event.depth:
            _, start, flags = stack.pop()
            if flags & CALL_SEEDED:
                return Paired(indent, why=f"{BEGAN_BEFORE}; {RETURN_LATE}" if event.flags & CALL_INEXACT else BEGAN_BEFORE)
            inexact = bool((flags | event.flags) & CALL_INEXACT)
            why = RETURN_LATE if event.flags & CALL_INEXACT else ENTRY_LATE if inexact else ""
            return Paired(indent, event.timestamp - start, why, inexact)
        return Paired(indent, why=BEGAN_BEFORE if indent == 0 else ENTRY_UNSEEN)

    def forget(self, processes: set[Process]) -> None:
        """The threads of these processes, which have exited: not those of a later process
        given one's PID, whose events may have come before the exit was known."""
        for tid in [tid for tid, thread in self._threads.items() if thread.process in processes]:
            del self._threads[tid]


@dataclass
class _Timed:
    open: list[tuple[int, model.Frame, int, int]] = field(default_factory=list)  # (depth, frame, begin, inexact)
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
            if event.flags & CALL_SEEDED:
                timed.open.append((depth, self._frame(event), 0, model.BEGAN_BEFORE_TRACING))
            else:
                timed.open.append((depth, self._frame(event), at, model.ENTRY_LATE if event.flags & CALL_INEXACT else 0))
        else:
            while timed.open and timed.open[-1][0] > depth:
                lost_depth, frame, begin, inexact = timed.open.pop()
                add(event.tid, model.Span(frame, begin, timed.last, lost_depth, inexact | model.RETURN_NOT_SEEN))
            if timed.open and timed.open[-1][0] == depth and not event.flags & CALL_ENTRY_UNSEEN:
                _, frame, begin, inexact = timed.open.pop()
                late = model.RETURN_LATE if event.flags & CALL_INEXACT else 0
                add(event.tid, model.Span(frame, begin, at, depth, inexact | late))
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
                depth, frame, begin, inexact = timed.open.pop()
                self.timeline.add(tid, model.Span(frame, begin, max(end, timed.last), depth,
                                                  inexact | model.STILL_RUNNING))
        return self.timeline


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int  # the function's first line (its code object's)
    synthetic: bool = False  # no call: what stands for calls the kernel could not keep apart


def synthetic(text: str) -> Frame:
    return Frame(text, "", 0, synthetic=True)


MAX_FRAMES = 128  # bpf/frames.h
DEEPER_FRAMES = synthetic(f"[deeper than {MAX_FRAMES} frames]")  # every call below the deepest frame kept
PATHS_NOT_KEPT = synthetic("[paths not kept: the nodes map was full]")  # calls below, merged
ROOT_NOT_KEPT = synthetic("[root not kept: the roots map was full]")  # paths whose thread's root is missing


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

    parent: Hashable
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
    """A call still running at an end (the kernel's shadow stack)."""

    node: Optional[Hashable]  # None: a call whose path the kernel could not keep
    start: int
    callees: int


@dataclass(frozen=True)
class OpenThread:
    """A thread's stack as the kernel held it at an end, tracing's or the thread's own exit:
    its calls still open, whose time up to `end` is charged here (the kernel charges a call
    only when it returns)."""

    root: int  # its current root
    idle: int  # since when it has been idle in its root (no open frames)
    frames: list[OpenFrame]  # outermost first
    end: int
    deep: Optional[tuple[Hashable, int]] = None  # (node of the calls deeper than its frames, since when they run)


@dataclass
class CallTree:
    """One thread's calls merged by path, with the time each path spent on top of the stack
    (self time, wall clock) and how many calls it made."""

    pid: int
    tid: Optional[int]  # None: paths whose thread's root was not kept
    root: Node


def _open_time(open_threads: list[OpenThread]) -> dict[Hashable, int]:
    extra: dict[Hashable, int] = defaultdict(int)
    for thread in open_threads:
        if not thread.frames:
            extra[thread.root] += thread.end - thread.idle
        last_until = thread.deep[1] if thread.deep else thread.end
        for frame, inner in zip(thread.frames, thread.frames[1:] + [None]):
            if frame.node is not None:
                until = inner.start if inner else last_until
                extra[frame.node] += until - frame.start - frame.callees
        if thread.deep:
            extra[thread.deep[0]] += thread.end - thread.deep[1]
    return extra


def build_call_trees(
    kernel_nodes: dict[Hashable, KernelNode],
    kernel_roots: dict[int, KernelRoot],
    open_threads: list[OpenThread],
) -> list[CallTree]:
    """Per thread, the call tree the kernel kept. Paths whose parent is missing (their
    thread's root could not be kept) go under a frame saying so, one tree per process."""
    extra = _open_time(open_threads)
    children: dict[Hashable, list[Hashable]] = defaultdict(list)
    orphans: dict[int, list[Hashable]] = defaultdict(list)
    for node_id, node in kernel_nodes.items():
        if node.parent in kernel_nodes or node.parent in kernel_roots:
            children[node.parent].append(node_id)
        else:
            orphans[node.pid].append(node_id)
    for root_id, root in kernel_roots.items():
        if root.parent in kernel_roots:
            children[root.parent].append(root_id)

    def make(record_id: Hashable) -> Node:
        extra_ns = extra.get(record_id, 0)
        if record_id in kernel_roots:
            root = kernel_roots[record_id]
            return Node(root.frame, self_ns=root.self_ns + extra_ns, calls=1 if root.frame else 0)
        node = kernel_nodes[record_id]
        return Node(node.frame, self_ns=node.self_ns + extra_ns, calls=node.calls)

    def grow(top: Node, top_ids: list[Hashable]) -> None:
        pending = [(record_id, top) for record_id in top_ids]  # iteratively: trees can be deep
        while pending:
            record_id, parent = pending.pop()
            node = _adopt(parent, make(record_id))
            pending.extend((child_id, node) for child_id in children[record_id])

    trees = []
    for root_id, root in kernel_roots.items():
        if root.parent in kernel_roots:
            continue  # below another root
        top = make(root_id)
        grow(top, children[root_id])
        trees.append(CallTree(root.pid, root.tid, top))
    for pid, top_ids in orphans.items():
        lost = Node(ROOT_NOT_KEPT)
        grow(lost, top_ids)
        trees.append(CallTree(pid, None, Node(None, children={ROOT_NOT_KEPT: lost})))
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
