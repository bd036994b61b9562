"""Which threads a dump reads again: those that may have run while they were read."""

import os

from pybpftrace.settled import Activity, activity, ran_between


def test_a_thread_that_slept_throughout_is_settled():
    before = {1: Activity(False, 10), 2: Activity(False, 3)}
    after = {1: Activity(False, 10), 2: Activity(False, 3)}
    assert ran_between(before, after) == set()


def test_running_at_either_look_switching_or_coming_and_going_is_not():
    before = {1: Activity(True, 10), 2: Activity(False, 3), 3: Activity(False, 7), 4: Activity(False, 1)}
    after = {1: Activity(False, 10), 2: Activity(True, 3), 3: Activity(False, 8), 5: Activity(False, 0)}
    assert ran_between(before, after) == {1, 2, 3, 4, 5}


def test_activity_of_this_process():
    found = activity(os.getpid())
    assert found[os.getpid()].running  # this thread, reading it
    assert found[os.getpid()].switches >= 0
    assert activity(999999999) == {}
