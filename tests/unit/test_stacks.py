"""Stack rebuilding from entry/return events, and folded rendering."""

from pybpftrace.events import EVENT_CALL, EVENT_CREATED, EVENT_RETURN, CallEvent
from pybpftrace.render import folded
from pybpftrace.sources import FirstLines
from pybpftrace.stacks import CallTrees, Creations, Pairing

US = 1000  # ns


def call(t, depth, function, line=1, tid=1, file="app.py"):
    return CallEvent(t * US, 100, tid, EVENT_CALL, depth, function, file, line)


def ret(t, depth, function, line=2, tid=1, file="app.py"):
    return CallEvent(t * US, 100, tid, EVENT_RETURN, depth, function, file, line)


def fold(events, weight="time", per_thread=False, end=None, sources=None):
    trees = CallTrees(0)
    for event in events:
        trees.feed(event)
    trees.finish((end if end is not None else events[-1].timestamp // US) * US)
    return folded(trees.threads, weight, per_thread, sources)


def test_pairing_gives_durations_and_indentation():
    pairing = Pairing()
    events = [call(0, 0, "a"), call(1, 1, "b"), ret(4, 1, "b"), ret(10, 0, "a")]
    assert [pairing.feed(e) for e in events] == [(0, None), (1, None), (1, 3 * US), (0, 10 * US)]


def test_pairing_mid_stack_returns_have_no_duration_and_move_the_floor():
    pairing = Pairing()
    # attached inside c() called by b(): d() runs, c returns, e() runs, b returns
    events = [call(0, 0, "d"), ret(1, 0, "d"), ret(2, -1, "c"), call(3, -1, "e"), ret(4, -1, "e"), ret(5, -2, "b")]
    assert [pairing.feed(e) for e in events] == [
        (0, None), (0, US), (0, None), (0, None), (0, US), (0, None)
    ]


def test_pairing_survives_a_lost_return():
    pairing = Pairing()
    events = [call(0, 0, "a"), call(1, 1, "b"), call(2, 2, "c"), ret(9, 0, "a")]  # b, c returns lost
    assert [pairing.feed(e)[1] for e in events] == [None, None, None, 9 * US]


def test_threads_pair_independently():
    pairing = Pairing()
    events = [call(0, 0, "a", tid=1), call(1, 0, "x", tid=2), ret(2, 0, "a", tid=1), ret(5, 0, "x", tid=2)]
    assert [pairing.feed(e)[1] for e in events] == [None, None, 2 * US, 4 * US]


def test_folded_self_time_in_microseconds():
    events = [call(0, 0, "main"), call(10, 1, "work"), ret(40, 1, "work"), ret(50, 0, "main")]
    assert fold(events) == [
        "main (app.py:1) 20",
        "main (app.py:1);work (app.py:1) 30",
    ]


def test_folded_merges_equal_paths_and_counts_calls():
    events = [call(0, 0, "main"), call(1, 1, "f"), ret(2, 1, "f"), call(3, 1, "f"), ret(4, 1, "f"),
              call(5, 1, "g"), call(6, 2, "f"), ret(7, 2, "f"), ret(8, 1, "g"), ret(9, 0, "main")]
    assert fold(events, weight="calls") == [
        "main (app.py:1) 1",
        "main (app.py:1);f (app.py:1) 2",
        "main (app.py:1);g (app.py:1) 1",
        "main (app.py:1);g (app.py:1);f (app.py:1) 1",
    ]


def test_folded_names_frames_that_began_before_tracing():
    # attached inside handle() called by loop(); handle's first line known from a later call
    events = [call(0, 0, "parse", line=5), ret(3, 0, "parse"), ret(4, -1, "handle", line=9),
              call(6, -1, "handle", line=7), ret(8, -1, "handle", line=9)]
    assert fold(events, weight="calls") == [
        "handle (app.py:7) 2",
        "handle (app.py:7);parse (app.py:5) 1",
    ]
    assert fold(events) == [
        "handle (app.py:7) 3",  # 0-0 before parse, 3-4 after it, 6-8 second call
        "handle (app.py:7);parse (app.py:5) 3",
    ]


def test_time_in_frames_never_named_is_not_counted():
    events = [call(5, 0, "f"), ret(7, 0, "f")]
    assert fold(events, end=100) == ["f (app.py:1) 2"]


def test_calls_still_running_at_the_end_are_charged_up_to_the_end():
    assert fold([call(0, 0, "main"), call(10, 1, "wait")], end=1000) == [
        "main (app.py:1) 10",
        "main (app.py:1);wait (app.py:1) 990",
    ]


def test_per_thread_roots_each_stack_at_its_thread():
    events = [call(0, 0, "a", tid=1), call(0, 0, "a", tid=2), ret(3, 0, "a", tid=1), ret(5, 0, "a", tid=2)]
    assert fold(events) == ["a (app.py:1) 8"]
    assert fold(events, per_thread=True) == ["thread 1;a (app.py:1) 3", "thread 2;a (app.py:1) 5"]


def test_deep_recursion_beyond_any_fixed_buffer():
    depth = 20000  # far beyond Python's recursion limit: the rebuilding is iterative
    events = [call(0, i, "r") for i in range(depth)] + [call(0, depth, "leaf"), ret(7, depth, "leaf")]
    events += [ret(7, depth - 1 - i, "r") for i in range(depth)]
    (line,) = fold(events)
    assert line == ";".join(["r (app.py:1)"] * depth) + ";leaf (app.py:1) 7"


def test_lost_entry_keeps_the_caller_open():
    events = [call(0, 0, "main"), ret(2, 1, "lost"), ret(3, 0, "main")]
    assert fold(events, weight="calls") == ["main (app.py:1) 1", "main (app.py:1);lost (app.py:2) 1"]


def test_zero_weight_stacks_are_left_out_and_semicolons_escaped():
    events = [call(0, 0, "main", file="a;b.py"), call(0, 1, "instant", file="a;b.py"),
              ret(0, 1, "instant", file="a;b.py"), ret(4, 0, "main", file="a;b.py")]
    assert fold(events) == ["main (a:b.py:1) 4"]


def test_generator_resumptions_merge_by_first_line_from_the_source(tmp_path):
    source = tmp_path / "gen.py"
    source.write_text("def numbers(n):\n    for i in range(n):\n        yield i\n")
    sources = FirstLines()
    sources.watch(100, root="/", cwd=str(tmp_path))
    events = [call(0, 0, "numbers", line=1, file="gen.py"), ret(1, 0, "numbers", line=3, file="gen.py"),
              call(2, 0, "numbers", line=3, file="gen.py"), ret(3, 0, "numbers", line=3, file="gen.py")]
    try:
        assert fold(events, weight="calls", sources=sources) == ["numbers (gen.py:1) 2"]
    finally:
        sources.close()
    assert fold(events, weight="calls") == ["numbers (gen.py:1) 1", "numbers (gen.py:3) 1"]


def created(t, depth, tid=1):
    return CallEvent(t * US, 100, tid, EVENT_CREATED, depth, "<null>", "<null>", 0)


def test_creations_take_back_the_entry_before_them_per_thread():
    creations = Creations()
    events = [call(0, 0, "main"), call(1, 1, "gen", tid=1), call(1, 0, "other", tid=2), created(2, 1),
              call(3, 1, "gen", tid=1), ret(4, 1, "gen"), ret(5, 0, "main")]
    passed = [e for event in events for e in creations.feed(event)] + creations.flush()
    assert [(e.tid, e.kind, e.function) for e in passed] == [
        (1, EVENT_CALL, "main"), (1, EVENT_CALL, "gen"), (1, EVENT_RETURN, "gen"), (1, EVENT_RETURN, "main"),
        (2, EVENT_CALL, "other"),  # held to the end: nothing followed it
    ]
