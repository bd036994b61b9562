"""dump's `holds the GIL`: the walk's instant checked against the GIL before and after."""
from pybpftrace.events import SAMPLE_DUMP, SAMPLE_HOLDS_GIL
from pybpftrace.samples import Sample
from pybpftrace.tools.dump import ThreadStack, confirm_gil


def thread(state: str, holds: bool) -> ThreadStack:
    sample = Sample(0, 1, 0, 0, 1, 1, SAMPLE_DUMP, SAMPLE_HOLDS_GIL if holds else 0, 0, [])
    return ThreadStack(sample, None, "python3", state, "clock_nanosleep" if state == "idle" else None)


def test_one_holder_throughout_keeps_an_idle_holder():
    threads = [thread("idle", True), thread("waiting for the GIL", False)]
    confirm_gil(threads, 0x1000, 0x1000)
    assert [t.holds_gil for t in threads] == [True, False]


def test_a_gil_let_go_or_passed_on_is_held_by_no_sleeper():
    for before, after in ((0x1000, 0), (0, 0x1000), (0x1000, 0x2000), (0, 0)):
        threads = [thread("idle", True), thread("waiting for the GIL", True)]
        confirm_gil(threads, before, after)
        assert not any(t.holds_gil for t in threads), (before, after)


def test_a_running_holder_keeps_what_the_walk_saw():
    threads = [thread("running", True)]
    confirm_gil(threads, 0x1000, 0x2000)
    assert threads[0].holds_gil
