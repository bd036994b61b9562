"""Stack rebuilding: pairing streamed events, call trees from what the kernel kept, and
folded rendering."""

from pybpftrace.events import CALL_ENTRY_UNSEEN, CALL_FRESH, CALL_INEXACT, EVENT_CALL, EVENT_CREATED, EVENT_RETURN, CallEvent
from pybpftrace.render import folded
from pybpftrace.stacks import (
    BEGAN_BEFORE,
    CALL_SEEDED,
    ENTRY_UNSEEN,
    RETURN_LATE,
    Creations,
    Frame,
    KernelNode,
    KernelRoot,
    OpenFrame,
    OpenThread,
    Pairing,
    build_call_trees,
)

US = 1000  # ns


def call(t, depth, function, line=1, tid=1, file="app.py", flags=0):
    return CallEvent(t * US, 100, tid, EVENT_CALL, depth, function, file, line, line, flags)


def ret(t, depth, function, line=2, tid=1, file="app.py", flags=0):
    return CallEvent(t * US, 100, tid, EVENT_RETURN, depth, function, file, line, 1, flags)


def paired(pairing, events):
    return [(p.indent, p.duration, p.why) for p in map(pairing.feed, events)]


def test_pairing_gives_durations_and_indentation():
    events = [call(0, 0, "a"), call(1, 1, "b"), ret(4, 1, "b"), ret(10, 0, "a")]
    assert paired(Pairing(), events) == [(0, None, ""), (1, None, ""), (1, 3 * US, ""), (0, 10 * US, "")]


def test_seeded_calls_began_before_tracing():
    # first seen inside b() called by a(): the kernel read both from memory (seeded)
    events = [call(0, 0, "a", flags=CALL_SEEDED | CALL_FRESH), call(0, 1, "b", flags=CALL_SEEDED),
              call(1, 2, "c"), ret(2, 2, "c"), ret(3, 1, "b"), ret(9, 0, "a", flags=CALL_INEXACT)]
    assert paired(Pairing(), events) == [
        (0, None, BEGAN_BEFORE), (1, None, BEGAN_BEFORE), (2, None, ""), (2, US, ""), (1, None, BEGAN_BEFORE),
        (0, None, f"{BEGAN_BEFORE}; {RETURN_LATE}")]


def test_pairing_returns_below_every_call_move_the_floor():
    # the frames it was in could not be read: returns below the stack kept (depth -1)
    events = [call(0, 0, "d"), ret(1, 0, "d"), ret(2, -1, "c", flags=CALL_ENTRY_UNSEEN), call(3, -1, "e"),
              ret(4, -1, "e")]
    assert paired(Pairing(), events) == [
        (0, None, ""), (0, US, ""), (0, None, BEGAN_BEFORE), (0, None, ""), (0, US, "")]


def test_a_return_seen_late_is_a_bound():
    events = [call(0, 0, "a"), call(1, 1, "b"), ret(9, 1, "b", flags=CALL_INEXACT)]
    assert [(p.duration, p.why, p.inexact) for p in map(Pairing().feed, events)][-1] == (8 * US, RETURN_LATE, True)


def test_a_return_with_no_entry_seen_is_said_so():
    events = [call(0, 0, "a"), ret(1, 1, "g", flags=CALL_ENTRY_UNSEEN), ret(2, 0, "a")]
    assert paired(Pairing(), events) == [(0, None, ""), (1, None, ENTRY_UNSEEN), (0, 2 * US, "")]


def test_pairing_survives_a_lost_return():
    pairing = Pairing()
    events = [call(0, 0, "a"), call(1, 1, "b"), call(2, 2, "c"), ret(9, 0, "a")]  # b, c returns lost
    assert [pairing.feed(e).duration for e in events] == [None, None, None, 9 * US]


def test_forgetting_an_exited_process_spares_a_later_one_with_its_pid():
    pairing = Pairing()
    dead = call(0, 0, "old", tid=7)
    reborn = call(5, 0, "new", tid=7, flags=CALL_FRESH)._replace(incarnation=2)
    pairing.feed(dead)
    pairing.feed(reborn)  # the new process's events came before the old one's exit was known
    pairing.forget({(100, 0)})
    assert pairing.feed(ret(9, 0, "new", tid=7)._replace(incarnation=2)).duration == 4 * US


def test_forgetting_a_process_takes_its_threads():
    pairing = Pairing()
    pairing.feed(call(0, 0, "a", tid=7))
    pairing.forget({(100, 0)})
    assert paired(pairing, [ret(9, 0, "a", tid=7)]) == [(0, None, BEGAN_BEFORE)]


def test_threads_pair_independently():
    pairing = Pairing()
    events = [call(0, 0, "a", tid=1), call(1, 0, "x", tid=2), ret(2, 0, "a", tid=1), ret(5, 0, "x", tid=2)]
    assert [pairing.feed(e).duration for e in events] == [None, None, 2 * US, 4 * US]


def tree(*nodes, roots=None, running=None, end=0):
    """Call trees from kernel records: nodes are (id, parent, function, self_us, calls[, line,
    file]); roots map id -> (parent, frame or None, self_us, tid); running map a thread to
    (its root, since when it is idle, its open frames), at `end`."""
    kernel_nodes = {}
    for node_id, parent, function, self_us, calls, *rest in nodes:
        line, file = (rest + [1, "app.py"][len(rest):])[:2]
        kernel_nodes[node_id] = KernelNode(parent, Frame(function, file, line), self_us * US, calls, 100)
    roots = roots or {1: (0, None, 0, 1)}
    kernel_roots = {root_id: KernelRoot(parent, frame, self_us * US, 100, tid)
                    for root_id, (parent, frame, self_us, tid) in roots.items()}
    open_threads = [OpenThread(root, idle, frames, end * US) for root, idle, frames in (running or {}).values()]
    return build_call_trees(kernel_nodes, kernel_roots, open_threads)


def test_folded_self_time_in_microseconds():
    trees = tree((10, 1, "main", 20, 1), (11, 10, "work", 30, 1))
    assert folded(trees) == ["main (app.py:1) 20", "main (app.py:1);work (app.py:1) 30"]
    assert folded(trees, weight="calls") == ["main (app.py:1) 1", "main (app.py:1);work (app.py:1) 1"]


def test_frames_that_began_before_tracing_are_named_roots():
    # attached inside handle(), called from a loop, its frames not read: handle returned (root 1
    # named, root 2 above it), then was called again
    roots = {1: (2, Frame("handle", "app.py", 7), 1, 1), 2: (0, None, 5, 1)}
    trees = tree((10, 1, "parse", 3, 1, 5), (20, 2, "handle", 2, 1, 7), roots=roots)
    assert folded(trees, weight="calls") == ["handle (app.py:7) 2", "handle (app.py:7);parse (app.py:5) 1"]
    assert folded(trees) == ["handle (app.py:7) 3", "handle (app.py:7);parse (app.py:5) 3"]


def test_calls_still_running_at_the_end_are_charged_up_to_the_end():
    running = {1: (1, 0, [OpenFrame(10, 0, 0), OpenFrame(11, 10 * US, 0)])}
    trees = tree((10, 1, "main", 0, 1), (11, 10, "wait", 0, 1), running=running, end=1000)
    assert folded(trees) == ["main (app.py:1) 10", "main (app.py:1);wait (app.py:1) 990"]


def test_an_idle_thread_charges_its_root_until_the_end():
    roots = {1: (2, Frame("loop", "app.py", 3), 4, 1), 2: (0, None, 0, 1)}
    trees = tree(roots=roots, running={1: (2, 100 * US, [])}, end=150)
    assert folded(trees) == ["loop (app.py:3) 4"]  # the unnamed top root's 50 us: frames unknown


def test_threads_merge_unless_per_thread():
    roots = {1: (0, None, 0, 1), 2: (0, None, 0, 2)}
    trees = tree((10, 1, "a", 3, 1), (20, 2, "a", 5, 1), roots=roots)
    assert folded(trees) == ["a (app.py:1) 8"]
    assert folded(trees, per_thread=True) == ["thread 1;a (app.py:1) 3", "thread 2;a (app.py:1) 5"]


def test_equal_frames_under_one_parent_merge():
    # two code objects with the same names (exec'd code): two kernel nodes, one frame
    trees = tree((10, 1, "f", 1, 1), (11, 1, "f", 2, 1), (12, 11, "g", 4, 1), (13, 10, "g", 8, 2))
    assert folded(trees, weight="calls") == ["f (app.py:1) 2", "f (app.py:1);g (app.py:1) 3"]


def test_deep_recursion_beyond_any_fixed_buffer():
    depth = 20000  # far beyond Python's recursion limit: the rebuilding is iterative
    nodes = [(10 + i, 10 + i - 1 if i else 1, "r", 0, 1) for i in range(depth)]
    nodes.append((10 + depth, 10 + depth - 1, "leaf", 7, 1))
    (line,) = folded(tree(*nodes))
    assert line == ";".join(["r (app.py:1)"] * depth) + ";leaf (app.py:1) 7"


def test_zero_weight_stacks_are_left_out_and_semicolons_escaped():
    trees = tree((10, 1, "main", 4, 1, 1, "a;b.py"), (11, 10, "instant", 0, 1, 1, "a;b.py"))
    assert folded(trees) == ["main (a\\x3bb.py:1) 4"]


def test_views_hide_frames_and_give_their_time_to_what_they_show():
    trees = tree((10, 1, "main", 1, 1), (11, 10, "helper", 2, 1, 1, "lib.py"), (12, 11, "work", 4, 1),
                 (13, 12, "deep", 8, 1))
    only_app = lambda path: [frame for frame in path if frame.file == "app.py"]  # noqa: E731
    assert folded(trees, view=only_app) == [
        "main (app.py:1) 3", "main (app.py:1);work (app.py:1) 4", "main (app.py:1);work (app.py:1);deep (app.py:1) 8"]
    assert folded(trees, weight="calls", view=only_app) == [
        "main (app.py:1) 1", "main (app.py:1);work (app.py:1) 1", "main (app.py:1);work (app.py:1);deep (app.py:1) 1"]
    assert folded(trees, view=lambda path: path[:2]) == ["main (app.py:1) 1", "main (app.py:1);helper (lib.py:1) 14"]


def created(t, depth, tid=1):
    return CallEvent(t * US, 100, tid, EVENT_CREATED, depth, "", "", 0)


def test_creations_take_back_the_entry_before_them_per_thread():
    creations = Creations()
    events = [call(0, 0, "main"), call(1, 1, "gen", tid=1), call(1, 0, "other", tid=2), created(2, 1),
              call(3, 1, "gen", tid=1), ret(4, 1, "gen"), ret(5, 0, "main")]
    passed = [e for event in events for e in creations.feed(event)] + creations.flush()
    assert [(e.tid, e.kind, e.function) for e in passed] == [
        (1, EVENT_CALL, "main"), (1, EVENT_CALL, "gen"), (1, EVENT_RETURN, "gen"), (1, EVENT_RETURN, "main"),
        (2, EVENT_CALL, "other"),  # held to the end: nothing followed it
    ]


def test_stack_options_become_a_view():
    from pybpftrace.tools.stack import StackOptions, folded_view

    path = [Frame("main", "app.py", 1), Frame("helper", "lib.py", 2), Frame("handle", "app.py", 3),
            Frame("work", "app.py", 4)]
    assert folded_view(StackOptions(function="handle"))(path) == path[2:]
    assert folded_view(StackOptions(function="absent"))(path) is None
    assert folded_view(StackOptions(filename="app"))(path) == [path[0], path[2], path[3]]
    assert folded_view(StackOptions(max_depth=2))(path) == path[:2]
    assert folded_view(StackOptions(function="handle", max_depth=1))(path) == [path[2]]
