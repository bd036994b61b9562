"""Records of the frame walker as user space reads them (codes.py, samples.py): code objects'
names in CPython's three string kinds, stacks counted by thread and reason, what could not be
read shown as frames, and the four weighings of a profile."""

import pytest

from pybpftrace.codes import Codes
from pybpftrace.events import (
    CODE_EVENT_HEAD, CODE_FILE_UNREADABLE, CODE_LINETABLE, CODE_NAME_UNREADABLE, SAMPLE_CPU, SAMPLE_CUT_SHORT,
    SAMPLE_FRAME, SAMPLE_HEAD, SAMPLE_NO_THREAD_STATE, SAMPLE_OFF_CPU, SAMPLE_PREEMPTED, SAMPLE_RESUMED,
    SAMPLE_SHORT_WAITS, SAMPLE_THREADS_UNSEARCHED, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE, TRUNCATION_MARK,
    UNREADABLE_NAME,
)
from pybpftrace.samples import (
    CUT_SHORT, NO_FRAMES, NO_THREAD_STATE, TRUNCATED, UNANNOUNCED_CODE, UNREADABLE_CODE,
    UNREADABLE_FRAME, UNSEARCHED, FrameNames, SampleCounts, call_trees, stack_frames, unpack,
)
from pybpftrace.stacks import Frame, nodes

ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}
GIL = 0x7F0000001000
FUTEX, READ = 202, 0


def code_record(code_id, name, file="app.py", first_line=10, kinds=(1, 1), flags=0, table=b"", table_size=None,
                version=(3, 11), pid=42, incarnation=1):
    encoded = [text.encode(ENCODINGS[kind]) for text, kind in zip((name, file), kinds)]
    head = CODE_EVENT_HEAD.pack(
        code_id, 0x1000 + code_id, pid, first_line, len(name), len(file), len(table) if table_size is None else table_size,
        len(table), version[0] << 8 | version[1], kinds[0], kinds[1], flags, incarnation, *encoded,
    )
    return head + table


def sample_record(frames, kind=SAMPLE_CPU, tid=7, weight=1, flags=0, syscall=0, address=0, pid=42):
    head = SAMPLE_HEAD.pack(1000, weight, 0, address, pid, tid, len(frames), kind, flags, syscall)
    return head + b"".join(SAMPLE_FRAME.pack(code, offset) for code, offset in frames)


@pytest.mark.parametrize("kind, name", [(1, "résumé"), (2, "計算"), (4, "🐍 snake")])
def test_names_in_each_string_kind(kind, name):
    codes = Codes()
    codes.add(code_record(5, name, kinds=(kind, 1)))
    assert (codes.get(5).function, codes.get(5).file, codes.get(5).first_line) == (name, "app.py", 10)


def test_a_name_longer_than_the_event_is_marked_cut():
    codes = Codes()
    codes.add(code_record(5, "f" * 300, file="ü" * 100, kinds=(1, 4)))
    # 256 bytes of UCS-4 are 64 characters
    assert codes.get(5).function == "f" * 256 + TRUNCATION_MARK
    assert codes.get(5).file == "ü" * 64 + TRUNCATION_MARK


def test_an_exited_process_takes_only_its_own_code_objects():
    """A process that exited is forgotten after a later one given its PID announced its code
    objects (codes are read ahead of the events that tell of the exit): those stay."""
    codes = Codes()
    codes.add(code_record(5, "dead", pid=42, incarnation=1))
    codes.add(code_record(6, "reborn", pid=42, incarnation=2))
    assert codes.processes() == {(42, 1), (42, 2)}
    codes.forget((42, 1))
    assert (codes.get(5), codes.get(6).function, codes.processes()) == (None, "reborn", {(42, 2)})


def test_a_walks_code_object_goes_with_its_process_live_incarnation():
    """A stack walk announces code objects without an incarnation: they are the PID's live
    one's, and go when it exits; where none is known they stay (0)."""
    codes = Codes()
    codes.add(code_record(5, "walked", pid=42, incarnation=0), {42: 3}.get)
    codes.add(code_record(6, "unknown", pid=43, incarnation=0), lambda pid: 0)
    assert codes.processes() == {(42, 3), (43, 0)}
    codes.forget((42, 3))
    assert (codes.get(5), codes.get(6).function) == (None, "unknown")


def test_unreadable_names_say_so():
    codes = Codes()
    codes.add(code_record(5, "f", flags=CODE_NAME_UNREADABLE | CODE_FILE_UNREADABLE))
    assert (codes.get(5).function, codes.get(5).file) == (UNREADABLE_NAME, UNREADABLE_NAME)


def test_lines_from_the_table_and_unknown_past_its_cut():
    # 3.11 location table: 2 code units at the first line, 1 unit one line down (one line form, code 11)
    table = bytes([0x81, 0x00, 0xD8, 0x00, 0x05])
    codes = Codes()
    codes.add(code_record(5, "f", flags=CODE_LINETABLE, table=table, table_size=len(table) + 10))
    code = codes.get(5)
    assert [code.line(offset) for offset in (0, 2, 4, 6)] == [10, 10, 11, None]
    assert code.linetable_cut
    codes.add(code_record(6, "g"))
    assert codes.get(6).line(0) is None  # no table asked for


def names(lines=False):
    codes = Codes()
    codes.add(code_record(1, "main", first_line=1, flags=CODE_LINETABLE, table=bytes([0x83, 0x00]) * 4))
    codes.add(code_record(2, "work", first_line=20))
    return FrameNames(codes, lines)


MAIN, WORK = Frame("main", "app.py", 1), Frame("work", "app.py", 20)


@pytest.mark.parametrize("flags, frames, expected", [
    (0, (2, 1), [MAIN, WORK]),
    (0, (), [NO_FRAMES]),
    (0, (0, 1), [MAIN, UNREADABLE_CODE]),
    (0, (9, 1), [MAIN, UNANNOUNCED_CODE]),
    (SAMPLE_UNREADABLE, (2,), [UNREADABLE_FRAME, WORK]),
    (SAMPLE_TRUNCATED, (2, 1), [TRUNCATED, MAIN, WORK]),
    (SAMPLE_CUT_SHORT | SAMPLE_TRUNCATED, (2,), [CUT_SHORT, TRUNCATED, WORK]),
    (SAMPLE_NO_THREAD_STATE, (), [NO_THREAD_STATE]),
    (SAMPLE_THREADS_UNSEARCHED, (), [UNSEARCHED]),
])
def test_what_could_not_be_read_is_a_frame(flags, frames, expected):
    frame_names = names()
    assert stack_frames(flags, frames, frame_names) == expected
    assert frame_names.unannounced == (9 in frames)


def test_lines_name_the_line_running():
    frame_names = names(lines=True)
    assert stack_frames(0, ((2, 4), (1, 6)), frame_names) == [Frame("main", "app.py", 1), Frame("work", "app.py", 0)]
    assert frame_names.lines_unknown == 1  # work has no line table
    assert stack_frames(0, ((1, 64),), frame_names) == [Frame("main", "app.py", 0)]  # past the table's end
    assert frame_names.lines_unknown == 2


def counted(*records, lines=False):
    counts = SampleCounts(lines=lines, gils={42: GIL})
    counts.add(records)
    return counts


def test_preempted_time_goes_to_the_stack_the_thread_left_with():
    counts = counted(
        sample_record([(2, 0), (1, 0)], kind=SAMPLE_PREEMPTED, weight=0),
        sample_record([], kind=SAMPLE_RESUMED, weight=3000),
        sample_record([], kind=SAMPLE_RESUMED, weight=500),  # its preemption's record was lost
    )
    assert dict(counts.off_cpu) == {((42, 7, 0, (2, 1)), ("preempted",)): 3000}
    assert counts.unpaired_ns == 500
    assert counts.total == 0


def test_a_futex_on_the_gil_is_waiting_for_it():
    counts = counted(
        sample_record([(1, 0)], kind=SAMPLE_OFF_CPU, weight=100, syscall=FUTEX, address=GIL + 8),
        sample_record([(1, 0)], kind=SAMPLE_OFF_CPU, weight=200, syscall=FUTEX, address=GIL + 4096),
        sample_record([(1, 0)], kind=SAMPLE_OFF_CPU, weight=400, syscall=READ, address=GIL),
    )
    assert dict(counts.off_cpu) == {
        ((42, 7, 0, (1,)), ("gil",)): 100,
        ((42, 7, 0, (1,)), ("syscall", FUTEX)): 200,
        ((42, 7, 0, (1,)), ("syscall", READ)): 400,
    }


def test_flags_are_counted_once_per_sample():
    counts = counted(
        sample_record([(1, 0)], flags=SAMPLE_TRUNCATED),
        sample_record([(1, 0)], flags=SAMPLE_TRUNCATED | SAMPLE_UNREADABLE),
        sample_record([], flags=SAMPLE_NO_THREAD_STATE),
    )
    assert dict(counts.flagged) == {SAMPLE_TRUNCATED: 2, SAMPLE_UNREADABLE: 1, SAMPLE_NO_THREAD_STATE: 1}
    assert counts.total == 3 and counts.threads == {7} and counts.processes == {42}


def test_waits_going_on_when_tracing_stopped():
    counts = counted(sample_record([(2, 0)], kind=SAMPLE_PREEMPTED, tid=8, weight=0))
    stacks = {7: unpack(sample_record([(1, 0)]))}  # the stack thread 7 waits in, read at the end
    counts.add_waits({7: (42, 900, READ, 0, False, 50), 8: (42, 300, 0, 0, True, 0), 9: (42, 70, READ, 0, False, 0)},
                     stacks)
    assert dict(counts.off_cpu) == {
        ((42, 7, 0, (1,)), ("syscall", READ)): 900,
        ((42, 8, 0, (2,)), ("preempted",)): 300,
    }
    assert counts.unwalked_ns == 70  # thread 9 exited before its stack was read
    assert dict(counts.short_waits) == {(42, 7): 50}


@pytest.fixture
def mixed():
    """Two ticks in work, one in main, 2 ms in a read below main, 1 ms of short waits."""
    return counted(
        sample_record([(2, 0), (1, 0)]), sample_record([(2, 0), (1, 0)]), sample_record([(1, 0)]),
        sample_record([(1, 0)], kind=SAMPLE_OFF_CPU, weight=2_000_000, syscall=READ),
        sample_record([], kind=SAMPLE_SHORT_WAITS, weight=1_000_000),
    )


def leaves(trees, value):
    return {tuple(frame.function for frame in path): value(node)
            for tree in trees for path, node in paths(tree.root) if value(node)}


def paths(root, prefix=()):
    for child in root.children.values():
        path = prefix + (child.frame,)
        yield path, child
        yield from paths(child, path)


@pytest.mark.parametrize("weighing, field, expected", [
    ("cpu", "samples", {("main",): 1, ("main", "work"): 2}),
    ("off-cpu", "self_ns", {("main", "[read]"): 2_000_000, ("[waits shorter than --min-block]",): 1_000_000}),
    ("wall", "self_ns", {("main",): 1_000_000, ("main", "work"): 2_000_000, ("main", "[read]"): 2_000_000,
                         ("[waits shorter than --min-block]",): 1_000_000}),
    # off-CPU time as the ticks it would have had at 1000 Hz
    ("idle", "samples", {("main",): 1, ("main", "work"): 2, ("main", "[read]"): 2,
                         ("[waits shorter than --min-block]",): 1}),
])
def test_the_four_weighings(mixed, weighing, field, expected):
    trees = call_trees(mixed, names(), weighing, rate=1000)
    assert leaves(trees, lambda node: getattr(node, field)) == expected
    other = "samples" if field == "self_ns" else "self_ns"
    assert all(getattr(node, other) == 0 for tree in trees for node in nodes(tree.root))
