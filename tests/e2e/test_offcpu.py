"""profile --off-cpu and --wall: each wait of threads that wait in known ways, on the right
stack with the right reason and the time the script measured itself; on and off a CPU adding
up to each thread's elapsed time; on every CPython the walker reads."""

import json
import os
import subprocess
from collections import Counter

import pytest

from support import HOST, PID, Target, folded_weights, line_of, trace_held

SLEEPS = ("clock_nanosleep", "select", "pselect6")  # what time.sleep waits in, by version
SHORT = "[waits shorter than --min-block]"  # a thread's waits too short to be walked


def profile_waits(interpreter, weighing, cpus=None):
    """The script's own timings, and its stacks per thread: {tid: {stack: microseconds}}; its
    threads on `cpus` if given. Its threads all exit before it does: none of their time is
    left over as waits of exited threads. Last, the tracer's summary (what it lost or could not
    tell), for the assertions to show."""
    target = Target("waits.py", interpreter=interpreter)
    if cpus:
        os.sched_setaffinity(target.pid, cpus)  # its threads, started later, inherit it
    run = trace_held(target, "profile", PID, weighing, "--per-thread", "--lines")
    assert run.code == 0, run.stderr
    assert "threads that exited" not in run.stderr, run.stderr
    threads = {}
    for stack, weight in folded_weights(run.stdout).items():
        root, rest = stack.split(";", 1)
        threads.setdefault(int(root.split()[1]), Counter())[rest] += weight
    return target, json.loads(run.target_output), threads, run.stderr


def at_line(stacks, target, marker):
    """The microseconds off a CPU at the line of `marker`, by reason."""
    frame = f"{marker.split()[0]} ({target.path}:{line_of('waits.py', marker)});["
    return Counter({stack.rsplit(";[", 1)[1].rstrip("]"): weight for stack, weight in stacks.items()
                    if frame in stack})


def test_each_wait_on_its_stack_with_its_reason(every_interpreter):
    target, results, threads, summary = profile_waits(every_interpreter, "--off-cpu")
    for name, marker, reasons in (("sleeper", "sleeper sleeps", SLEEPS), ("waiter", "waiter waits", ("futex",)),
                                  ("reader", "reader receives", ("recvfrom",))):
        waits = at_line(threads[results[name]["tid"]], target, marker)
        measured = results[name]["waited"] * 1e6
        # the thread measured its wait and the GIL it took back after: both are there (how long
        # the GIL takes to come back depends on the machine's load: the wait's own reason is the
        # largest share, and nothing else is there but the GIL and preemption)
        assert sum(waits.values()) == pytest.approx(measured, rel=0.10), (name, waits, measured, summary)
        assert max(waits, key=waits.get) in reasons and set(waits) <= {*reasons, "GIL", "preempted"}, (name, waits,
                                                                                                        summary)
    for name in ("burner", "burner2"):  # two threads that never block share one GIL
        stacks = threads[results[name]["tid"]]
        waits = at_line(stacks, target, "burner burns")
        assert waits["GIL"] > 0 and set(waits) <= {"GIL", "preempted"}, (name, waits, summary)
        # its time off a CPU, as its kernel counts it, is all there: not a share of its run,
        # which a TCG guest charges with the time its virtual CPU was stalled (once 23% GIL)
        off_cpu = (results[name]["elapsed"] - results[name]["cpu"]) * 1e6
        seen = sum(weight for stack, weight in stacks.items() if f"burner ({target.path}:" in stack or SHORT in stack)
        assert seen == pytest.approx(off_cpu, rel=0.10), (name, stacks, off_cpu, summary)


def assert_each_threads_time_adds_up(target, results, threads, summary):
    """The time of each thread's stacks inside the script's run(), which times itself: not
    the thread's start before it (under load, a thread can wait a long while for a CPU there)."""
    timed = f";run ({target.path}:"
    for name, result in results.items():
        total = sum(weight for stack, weight in threads[result["tid"]].items() if timed in stack)
        assert total == pytest.approx(result["elapsed"] * 1e6, rel=0.10), (name, threads[result["tid"]], summary)


def test_on_and_off_a_cpu_add_up_to_each_threads_time(every_interpreter):
    assert_each_threads_time_adds_up(*profile_waits(every_interpreter, "--wall"))


def test_preempted_time_adds_up_on_a_shared_cpu():
    """On a CPU shared with a process that never sleeps, the target's threads are preempted
    hundreds of times a second: the two threads that burn CPU spend a good part of their time
    [preempted], and on and off a CPU still add up to each thread's elapsed time."""
    hog = subprocess.Popen([*HOST.argv(), "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {0})
        target, results, threads, summary = profile_waits(HOST, "--wall", cpus={0})
    finally:
        hog.kill()
        hog.wait()
    assert_each_threads_time_adds_up(target, results, threads, summary)
    burners = [threads[results[name]["tid"]] for name in ("burner", "burner2")]
    preempted = sum(weight for stacks in burners for stack, weight in stacks.items() if stack.endswith(";[preempted]"))
    assert preempted >= 0.2 * sum(results[name]["elapsed"] * 1e6 for name in ("burner", "burner2")), burners
