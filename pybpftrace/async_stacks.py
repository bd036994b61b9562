"""`profile --async` and `top --async`: a sample taken inside an asyncio task is joined to the
tasks that await it. The kernel tags each frame a generator or coroutine owns with the low half
of that generator's address (bpf/pystacks.h, generator_tag); a snapshot of the process's tasks,
read out of its memory (asyncio_tasks.py), says which coroutine is which task's and who awaits
whom. The thread's stack is cut at the task's coroutine, and continued by a `[task NAME]`
frame, the await chain of the task awaiting it, its `[task NAME]`, and so on up to a root task.

Samples are held until the next snapshot of their process (read every second or so, and at the
end) and joined with it, or, where their task is not in it (it finished meanwhile), with the
snapshot before. A sample that cannot be joined keeps its thread's stack; the notes count them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from .asyncio_tasks import AsyncTask, TaskFrame, TaskSnapshot, read_tasks, versions
from .codes import Codes
from .errors import TraceError
from .events import SAMPLE_CUT_SHORT, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE
from .samples import Sample, unpack
from .sampling import WalkedBinary
from .stacks import Frame


TASKS_DEEP_MAX = 256  # tasks a chain of awaiters climbs: deeper is taken for a loop
HELD_BYTES_MAX = 32 << 20  # samples held for a snapshot: beyond, one is read at once
SNAPSHOT_SECONDS = 1.0  # between snapshots, at least
SNAPSHOT_SHARE = 5  # and at least this many times as long as the last one took to read

# Why a sample in a generator's frames was not joined, or why its chain stops short of a root.
NO_TASK = "in coroutines of no task the snapshots had"
OTHER_CODE = "whose coroutine's address was a task's, its code another"
NO_SNAPSHOT = f"of processes whose tasks were never read (CPython {versions()} only; or it exited first)"
NO_ASYNCIO = "of processes that had not imported asyncio"
PARENT_MISSING = "an awaiting task not in the snapshot"
LOOP = "a loop of awaiting tasks"
TOO_DEEP = f"deeper than {TASKS_DEEP_MAX} tasks"


def coroutine_tag(address: int) -> int:
    """The tag the kernel gives the frame of the coroutine at `address`."""
    return (address & 0xFFFFFFFF) | 1


def task_frame(name: str) -> Frame:
    return Frame(f"[task {name}]", "", 0)


@dataclass(frozen=True)
class Joined:
    """A sample's stack joined to its task: its innermost `kept` frames, then `above`
    (innermost first); stopped: why the chain stops short of a root task, or None."""

    kept: int
    above: tuple[Frame, ...]
    stopped: Optional[str] = None


class TaskIndex:
    """A snapshot of a process's tasks, looked up by their coroutines' tags; the frames above
    each task (its awaiters' chains) made once. frame_of: a chain's frame as a stack's."""

    def __init__(self, snapshot: TaskSnapshot, frame_of: Callable[[TaskFrame], Frame]):
        self._by_tag: dict[int, list[AsyncTask]] = {}
        for task in snapshot.tasks:
            self._by_tag.setdefault(coroutine_tag(task.coro), []).append(task)
        self._by_address = snapshot.by_address()
        self.imported = snapshot.imported  # else it has no tasks
        self._frame_of = frame_of
        self._above: dict[int, tuple[tuple[Frame, ...], Optional[str]]] = {}

    def tasks(self, tag: int) -> list[AsyncTask]:
        return self._by_tag.get(tag, [])

    def above(self, task: AsyncTask) -> tuple[tuple[Frame, ...], Optional[str]]:
        """The frames above a task's coroutine: `[task NAME]`, then each awaiter's chain and
        name up to a root; and why they stop short of one (None: they reach it)."""
        if task.address not in self._above:
            frames, seen, stopped = [task_frame(task.name)], {task.address}, None
            current = task
            for _ in range(TASKS_DEEP_MAX):
                if not current.awaited_by:
                    break
                # Awaited by several (3.14+'s set: a task shielded or gathered twice): the first
                # the snapshot lists, so that its samples stay under one parent.
                parent = self._by_address.get(current.awaited_by[0])
                if parent is None:
                    stopped = PARENT_MISSING
                    break
                if parent.address in seen:
                    stopped = LOOP
                    break
                seen.add(parent.address)
                frames += [self._frame_of(frame) for frame in parent.frames]
                frames.append(task_frame(parent.name))
                current = parent
            else:
                stopped = TOO_DEEP
            self._above[task.address] = (tuple(frames), stopped)
        return self._above[task.address]


def join(frames: Sequence, tags: Sequence[int], function_of: Callable[[object], Optional[tuple[str, str]]],
         index: TaskIndex) -> Joined | str | None:
    """A sample's frames (innermost first, as the key holds them) joined at the first whose tag
    is a task's coroutine's and whose code (function, file) is that coroutine's own (frames[-1]
    of its chain): both, so that an address reused, or two sharing their low half, never join
    the wrong task. Why not (NO_TASK, OTHER_CODE) where a frame is a generator's; None where
    none is."""
    why = None
    for position, tag in enumerate(tags):
        if not tag:
            continue
        why = why or NO_TASK
        for task in index.tasks(tag):
            own = task.frames[-1] if task.frames else None
            if own is not None and function_of(frames[position]) == (own.function, own.file):
                above, stopped = index.above(task)
                return Joined(position + 1, above, stopped)
            why = OTHER_CODE
    return why


@dataclass
class JoinCounts:
    """What the joins came to, for the summary."""

    joined: int = 0
    not_joined: Counter = field(default_factory=Counter)  # why -> samples
    stopped: Counter = field(default_factory=Counter)  # why -> joined samples whose chain stops short
    failures: dict[int, str] = field(default_factory=dict)  # pid -> why its tasks could not be read
    snapshot_notes: dict[int, list[str]] = field(default_factory=dict)  # pid -> its latest snapshot's notes

    def notes(self) -> list[str]:
        notes = [f"--async: {self.joined} samples joined to their tasks' awaiters"]
        if self.not_joined:
            reasons = ", ".join(f"{n} {why}" for why, n in self.not_joined.most_common())
            notes.append(f"{sum(self.not_joined.values())} samples in generators or coroutines left as their "
                         f"thread's stack ({reasons})")
        for why, n in self.stopped.most_common():
            notes.append(f"{n} joined samples whose chain of tasks stops at {why}")
        for pid, why in sorted(self.failures.items()):
            notes.append(f"the tasks of PID {pid} could not be read: {why}")
        for pid, said in sorted(self.snapshot_notes.items()):
            notes += [f"the tasks of PID {pid}: {note}" for note in said]
        return notes

    def as_json(self) -> dict:
        return {"joined": self.joined, "not_joined": dict(self.not_joined), "chains_stopped": dict(self.stopped)}


class TaskJoin:
    """Samples (records of a program built with ASYNC_TASKS) held until a snapshot of their
    process's tasks, then joined. read: a process's snapshot (None: it has no asyncio, or its
    version is not one the reader knows); lines: frames keep their lines (profile --lines)."""

    def __init__(self, read: Callable[[int], Optional[TaskSnapshot]], codes: Codes, lines: bool):
        self._read = read
        self._codes = codes
        self._lines = lines
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._latest: dict[int, TaskIndex] = {}  # pid -> its latest snapshot
        self._read_at = time.monotonic()  # when the last snapshots were read, and how long it took
        self._read_seconds = 0.0
        self.counts = JoinCounts()

    def hold(self, records: Iterable[bytes]) -> None:
        for record in records:
            self._held.append(record)
            self._held_bytes += len(record)

    def due(self, every: float = SNAPSHOT_SECONDS) -> bool:
        """Whether it is time for a snapshot: `every` seconds since the last (and SNAPSHOT_SHARE
        times as long as it took, so that reading leaves the rings time to be drained), or
        too much held."""
        wait = max(every, SNAPSHOT_SHARE * self._read_seconds)
        return self._held_bytes > HELD_BYTES_MAX or (bool(self._held) and time.monotonic() >= self._read_at + wait)

    def release(self, gone: Iterable[int] = ()) -> list[Sample]:
        """Every sample held, in order, joined with a snapshot of its process read now (those
        `gone` have exited: with their latest)."""
        started = time.monotonic()
        held, self._held, self._held_bytes = self._held, [], 0
        samples = [unpack(record, tagged=True) for record in held]
        gone = set(gone)
        pids = {sample.pid for sample in samples if any(sample.tags)}
        fresh = {pid: index for pid in pids - gone if (index := self._snapshot(pid)) is not None}
        for sample in samples:
            if any(sample.tags):
                self._join(sample, [index for index in (fresh.get(sample.pid), self._latest.get(sample.pid))
                                    if index is not None])
        self._latest.update(fresh)
        for pid in gone:
            self._latest.pop(pid, None)
        self._read_at, self._read_seconds = time.monotonic(), time.monotonic() - started
        return samples

    def _snapshot(self, pid: int) -> Optional[TaskIndex]:
        try:
            snapshot = self._read(pid)
        except (OSError, TraceError) as error:  # gone, or unreadable (what its memory holds raises nothing)
            self.counts.failures[pid] = str(error) or type(error).__name__
            return None
        if snapshot is None:
            return None
        self.counts.snapshot_notes[pid] = snapshot.notes  # the latest say what the reader could not read
        return TaskIndex(snapshot, self._frame_of)

    def _frame_of(self, frame: TaskFrame) -> Frame:
        """A chain's frame as the sampled ones show: at its line with --lines, else at its
        function's first line."""
        return Frame(frame.function, frame.file, (frame.line if self._lines else frame.first_line) or 0)

    def _join(self, sample: Sample, indexes: list[TaskIndex]) -> None:
        """Join with the first index that joins it; its frames cut and continued, or as they are."""
        if not indexes:
            self.counts.not_joined[NO_SNAPSHOT] += 1
            return
        whys = set()
        for index in indexes:
            joined = join(sample.frames, sample.tags, self._function_of, index) if index.imported else NO_ASYNCIO
            if isinstance(joined, Joined):
                sample.frames, sample.tags = sample.frames[: joined.kept], sample.tags[: joined.kept]
                sample.above = joined.above
                sample.flags &= ~(SAMPLE_TRUNCATED | SAMPLE_CUT_SHORT | SAMPLE_UNREADABLE)  # the outer frames went
                self.counts.joined += 1
                if joined.stopped:
                    self.counts.stopped[joined.stopped] += 1
                return
            whys.add(joined)
        self.counts.not_joined[next(why for why in (OTHER_CODE, NO_TASK, NO_ASYNCIO) if why in whys)] += 1

    def _function_of(self, frame: tuple[int, int]) -> Optional[tuple[str, str]]:
        code = self._codes.get(frame[0]) if frame[0] else None
        return (code.function, code.file) if code else None


def task_reader(walked: Callable[[int], Optional[WalkedBinary]], qualnames: bool
                ) -> Callable[[int], Optional[TaskSnapshot]]:
    """Snapshots of the tasks of the processes the walker reads (walked: a process's binary,
    None once it is not registered), their functions named as the kernel names them."""

    def read(pid: int) -> Optional[TaskSnapshot]:
        binary = walked(pid)
        return read_tasks(pid, binary, qualnames=qualnames) if binary is not None else None

    return read
