"""--async's join (pybpftrace/async_stacks.py): a sample cut at its task's coroutine and
continued by its awaiters' chains, on snapshots made up here; what is not joined, and why."""

from dataclasses import dataclass, field
from typing import Optional

from pybpftrace import async_stacks
from pybpftrace.async_stacks import (
    LOOP, NO_ASYNCIO, NO_SNAPSHOT, NO_TASK, OTHER_CODE, PARENT_MISSING, TOO_DEEP, Joined, TaskIndex, TaskJoin, coroutine_tag,
    join, task_frame,
)
from pybpftrace.codes import Codes
from pybpftrace.formats.folded import folded_lines
from pybpftrace.events import SAMPLE_CPU, SAMPLE_HEAD, SAMPLE_TRUNCATED, TAGGED_SAMPLE_FRAME
from pybpftrace.render import weighted_stacks
from pybpftrace.samples import FrameNames, SampleCounts, call_trees, stack_frames
from pybpftrace.stacks import Frame
from test_samples import code_record


@dataclass(frozen=True)
class TaskFrame:  # asyncio_tasks' shapes, as the join reads them
    function: str
    file: str
    line: Optional[int]
    first_line: int = 0


@dataclass
class AsyncTask:
    address: int
    name: str
    state: str
    coro: int
    thread: Optional[int]
    awaited_by: list = field(default_factory=list)
    frames: list = field(default_factory=list)


@dataclass
class TaskSnapshot:
    tasks: list
    notes: list = field(default_factory=list)
    imported: bool = True

    def by_address(self):
        return {task.address: task for task in self.tasks}


APP = "app.py"
TASKGROUPS = "taskgroups.py"
MAIN = AsyncTask(0x7F0000001000, "Task-1", "pending", 0x7F00AAAA2000, None, [], [
    TaskFrame("_aexit", TASKGROUPS, 121, 110), TaskFrame("__aexit__", TASKGROUPS, 72, 70), TaskFrame("main", APP, 40, 33)])
BUSY = AsyncTask(0x7F0000003000, "busy", "running", 0x7F00BBBB4000, 7, [MAIN.address], [TaskFrame("busy", APP, 31)])
# code ids of the sample's frames, innermost first: spin, work, busy, then the event loop's
FUNCTIONS = {1: ("spin", APP), 2: ("work", APP), 3: ("busy", APP), 4: ("_run", "events.py"),
             5: ("_run_once", "base_events.py"), 6: ("main", APP)}
FRAMES = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]
TAGS = [0, 0x12345679, coroutine_tag(BUSY.coro), 0, 0]  # work is a coroutine too, of no task


def frame_of(frame):
    return Frame(frame.function, frame.file, frame.line)


def function_of(item):
    return FUNCTIONS.get(item[0])


def index(*tasks):
    return TaskIndex(TaskSnapshot(list(tasks)), frame_of)


def test_a_task_is_cut_at_its_coroutine_and_continued_by_its_awaiters():
    joined = join(FRAMES, TAGS, function_of, index(MAIN, BUSY))
    assert joined == Joined(3, (
        task_frame("busy"), Frame("_aexit", TASKGROUPS, 121), Frame("__aexit__", TASKGROUPS, 72),
        Frame("main", APP, 40), task_frame("Task-1"),
    ))


def test_the_root_task_itself_ends_in_its_name():
    tags = [0, 0, 0, coroutine_tag(MAIN.coro)]
    frames = [(1, 0), (2, 0), (4, 0), (6, 0)]
    assert join(frames, tags, function_of, index(MAIN, BUSY)) == Joined(4, (task_frame("Task-1"),))


def test_a_frame_with_a_tasks_tag_but_another_code_is_not_joined():
    """The coroutine's address reused (or two addresses sharing their low half)."""
    tags = [0, coroutine_tag(BUSY.coro), 0, 0, 0]  # on work's frame, whose code is not busy's
    assert join(FRAMES, tags, function_of, index(MAIN, BUSY)) == OTHER_CODE


def test_generators_of_no_task_and_no_generators_at_all():
    assert join(FRAMES, [0, 0x11, 0, 0, 0], function_of, index(MAIN, BUSY)) == NO_TASK
    assert join(FRAMES, [0] * 5, function_of, index(MAIN, BUSY)) is None


def test_a_loop_of_awaiters_stops_the_chain_and_says_so():
    first = AsyncTask(0x1000, "first", "running", BUSY.coro, 7, [0x2000], [TaskFrame("busy", APP, 31)])
    second = AsyncTask(0x2000, "second", "pending", 0x3000, None, [0x1000], [TaskFrame("main", APP, 40)])
    joined = join(FRAMES, TAGS, function_of, index(first, second))
    assert joined == Joined(3, (task_frame("first"), Frame("main", APP, 40), task_frame("second")), LOOP)


def test_an_awaiter_missing_from_the_snapshot_stops_the_chain():
    joined = join(FRAMES, TAGS, function_of, index(BUSY))  # MAIN finished meanwhile
    assert joined == Joined(3, (task_frame("busy"),), PARENT_MISSING)


def test_a_chain_deeper_than_the_bound_stops(monkeypatch):
    monkeypatch.setattr(async_stacks, "TASKS_DEEP_MAX", 2)
    chain = [AsyncTask(0x1000 * (n + 1), f"t{n}", "pending", 0x100 * (n + 1), None, [0x1000 * (n + 2)],
                       [TaskFrame("busy", APP, n)]) for n in range(5)]
    joined = join(FRAMES, [0, 0, coroutine_tag(0x100), 0, 0], function_of, index(*chain))
    assert joined.stopped == TOO_DEEP and len(joined.above) == 1 + 2 * 2


def test_the_first_awaiter_is_followed_where_there_are_several():
    other = AsyncTask(0x9000, "other", "pending", 0x9100, None, [], [TaskFrame("other", APP, 5)])
    shared = AsyncTask(BUSY.address, "busy", "running", BUSY.coro, 7, [other.address, MAIN.address], BUSY.frames)
    joined = join(FRAMES, TAGS, function_of, index(MAIN, other, shared))
    assert joined.above[-1] == task_frame("other")


def record(frames, tags, tid=7, flags=0, pid=42):
    head = SAMPLE_HEAD.pack(1000, 1, 0, 0, pid, tid, len(frames), SAMPLE_CPU, flags, 0)
    return head + b"".join(TAGGED_SAMPLE_FRAME.pack(code, offset, tag) for (code, offset), tag in zip(frames, tags))


def codes():
    known = Codes()
    for code_id, (function, file) in FUNCTIONS.items():
        known.add(code_record(code_id, function, file, first_line=10 * code_id))
    return known


def test_held_samples_are_joined_with_the_next_snapshot_else_the_one_before():
    snapshots = [TaskSnapshot([MAIN, BUSY]), TaskSnapshot([MAIN])]  # busy is done by the second
    tasks = TaskJoin(lambda pid: snapshots.pop(0), codes(), lines=False)
    tasks.hold([record(FRAMES, TAGS)])
    (first,) = tasks.release()
    tasks.hold([record(FRAMES, TAGS, flags=SAMPLE_TRUNCATED)])
    (second,) = tasks.release()
    for sample in (first, second):
        assert [code for code, _ in sample.frames] == [1, 2, 3]
        # the chain's frames at their functions' first lines, as the kernel's are shown
        assert sample.above[1:4] == (Frame("_aexit", TASKGROUPS, 110), Frame("__aexit__", TASKGROUPS, 70),
                                     Frame("main", APP, 33))
    assert second.flags == 0  # the frames beyond the walker's depth were the event loop's
    assert tasks.counts.joined == 2 and not tasks.counts.not_joined


def test_with_lines_the_chain_shows_where_each_awaits():
    tasks = TaskJoin(lambda pid: TaskSnapshot([MAIN, BUSY]), codes(), lines=True)
    tasks.hold([record(FRAMES, TAGS)])
    (sample,) = tasks.release()
    assert sample.above[1:4] == (Frame("_aexit", TASKGROUPS, 121), Frame("__aexit__", TASKGROUPS, 72),
                                 Frame("main", APP, 40))


def test_what_is_not_joined_keeps_its_stack_and_is_counted():
    answers = {42: TaskSnapshot([MAIN, BUSY], ["1 task changed while read"]), 43: None,
               44: TaskSnapshot([], imported=False)}
    tasks = TaskJoin(answers.get, codes(), lines=False)
    tasks.hold([record(FRAMES, [0, 0, coroutine_tag(0xDEAD000), 0, 0]), record(FRAMES, TAGS, pid=43),
                record(FRAMES, [0] * 5), record(FRAMES, TAGS, pid=44)])
    samples = tasks.release()
    assert [len(sample.frames) for sample in samples] == [5] * 4 and not any(sample.above for sample in samples)
    assert tasks.counts.not_joined == {NO_TASK: 1, NO_SNAPSHOT: 1, NO_ASYNCIO: 1}
    notes = tasks.counts.notes()
    assert "3 samples in generators or coroutines left as their thread's stack" in " ".join(notes)
    assert "the tasks of PID 42: 1 task changed while read" in notes


def test_a_reader_that_fails_is_said_in_one_line():
    def fails(pid):
        raise OSError("its memory went")

    tasks = TaskJoin(fails, codes(), lines=False)
    tasks.hold([record(FRAMES, TAGS)])
    tasks.release()
    assert tasks.counts.failures == {42: "its memory went"}
    assert "the tasks of PID 42 could not be read: its memory went" in tasks.counts.notes()


def test_a_snapshot_is_due_after_a_second_or_when_too_much_is_held(monkeypatch):
    tasks = TaskJoin(lambda pid: None, codes(), lines=False)
    assert not tasks.due()  # nothing held
    tasks.hold([record(FRAMES, TAGS)])
    assert not tasks.due() and tasks.due(every=0)
    monkeypatch.setattr(async_stacks, "HELD_BYTES_MAX", 10)
    assert tasks.due()


def test_joined_stacks_render_with_their_task_frames():
    tasks = TaskJoin(lambda pid: TaskSnapshot([MAIN, BUSY]), codes(), lines=False)
    tasks.hold([record(FRAMES, TAGS)])
    counts = SampleCounts()
    counts.add_samples(tasks.release())
    ((_, _, flags, frames),) = counts.on_cpu
    path = [frame.function for frame in stack_frames(flags, frames, FrameNames(codes(), lines=False))]
    assert path == ["[task Task-1]", "main", "__aexit__", "_aexit", "[task busy]", "busy", "work", "spin"]


def test_a_task_named_by_the_target_is_escaped_as_any_frame_in_folded_stacks():
    named = AsyncTask(BUSY.address, "a;b\x1b[2J", "running", BUSY.coro, 7, [], BUSY.frames)
    tasks = TaskJoin(lambda pid: TaskSnapshot([named]), codes(), lines=False)
    tasks.hold([record(FRAMES, TAGS)])
    counts = SampleCounts()
    counts.add_samples(tasks.release())
    trees = call_trees(counts, FrameNames(codes(), lines=False))
    (line,) = folded_lines(weighted_stacks(trees, "samples"))
    assert line.startswith("[task a\\x3bb\\x1b[2J];busy (app.py:30);")
