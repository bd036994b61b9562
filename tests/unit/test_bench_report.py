"""The benchmark's pure parts: medians and ratios, rows from runs, the goals' verdicts, the
table, and reading what the peers print."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside tests/

from bench.report import Cell, goals, lost_text, median, per_event_ns, ratio, summarize, table  # noqa: E402
from bench.tracers import read_bpftrace, read_pybpftrace, read_ucalls, read_ucalls_latency, read_uflow  # noqa: E402

COUNTS = {"entries": 1000, "returns": 1002, "work_events": 2000}


def cells(**seconds_by_tracer):
    kinds = {"untraced": "untraced", "floor": "floor", "floor (entries)": "floor", "floor (clock)": "floor", "uflow": "peer", "ucalls": "peer", "bpftrace": "peer"}
    return [
        Cell("3.15", "fib", name, kinds.get(name, "pybpftrace"), runs=[dict(run) for run in runs])
        for name, runs in seconds_by_tracer.items()
    ]


def lines(text):
    return iter(text.splitlines(keepends=True))


def test_median_skips_missing_values():
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None]) is None


def test_ratio_and_cost_per_event():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None
    assert per_event_ns(4.0, 1.0, 3000) == 1e6  # 3 s added over 3000 events
    assert per_event_ns(4.0, None, 3000) is None


def test_rows_take_medians_and_the_worst_loss():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}, {"seconds": 1.2}, {"seconds": 0.8}],
        floor=[{"seconds": 3.0}],
        **{"stack -o FILE": [{"seconds": 4.0, "events": 2002, "lost": 0},
                             {"seconds": 5.0, "events": 2002, "lost": 1001},
                             {"seconds": 3.0, "events": 2002, "lost": 0}]},
    ), COUNTS)
    untraced, floor, stack = rows
    assert untraced.note == "2,000 events in the work"
    assert floor.cost_ratio == 1.0
    assert stack.slowdown == 4.0
    assert stack.cost_ratio == 1.5
    assert stack.per_event_ns == 1.5e6  # 3 s over 2000 events
    assert stack.lost == 1001
    assert lost_text(stack) == "1,001 (50%)"


def test_a_mode_that_ends_before_the_work_is_not_judged():
    # top --once probes entries only, and stops after one interval
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}], **{"floor (entries)": [{"seconds": 2.5}]},
        **{"top --once": [{"seconds": 2.0, "events": 600, "lost": 0}]},
    ), COUNTS)
    top = rows[3]
    assert top.partial and "ended before the work did (1 of 1 runs)" in top.note
    assert goals(rows)[0].verdict == "not evaluated"


def test_what_probes_entries_only_is_held_against_the_entry_floor():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}], **{"floor (entries)": [{"seconds": 2.5}]},
        **{"top --once": [{"seconds": 2.8, "events": 1000, "lost": 0}]},
        ucalls=[{"seconds": 3.4, "events": 1000, "entries": 1000}],
    ), COUNTS)
    floor, entry_floor, top, ucalls = rows[1:]
    assert floor.cost_ratio == entry_floor.cost_ratio == 1.0
    # the entry floor: 1.5 s over the work's entries (1000 scaled to the work: 1000 * 2000 / 2002)
    entries_in_work = 1000 * 2000 / 2002
    assert entry_floor.per_event_ns == pytest.approx(1.5 / entries_in_work * 1e9)
    assert top.cost_ratio == pytest.approx(1.8 / 1.5)
    assert ucalls.cost_ratio == pytest.approx(2.4 / 1.5)


def test_the_clock_floor_is_held_against_the_floor():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}], **{"floor (clock)": [{"seconds": 3.2}]},
    ), COUNTS)
    floor, clock = rows[1:]
    assert floor.cost_ratio == 1.0
    assert clock.cost_ratio == pytest.approx(2.2 / 2.0)


def test_a_peer_that_sees_no_entries_is_not_compared():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}],
        uflow=[{"seconds": 2.0, "events": 1002, "entries": 0, "attach_seconds": 1.0, "peak_rss_mib": 100.0}],
        calls=[{"seconds": 5.0, "events": 2002, "lost": 0, "attach_seconds": 2.0, "peak_rss_mib": 50.0}],
    ), COUNTS)
    uflow, calls = rows[2], rows[3]
    assert not uflow.comparable
    assert uflow.slowdown is None and "saw no function entries (of 1,000)" in uflow.note
    assert calls.attach_vs_uflow == 2.0 and calls.rss_vs_uflow == 0.5
    verdicts = {goal.text.split(":")[1].strip(): goal for goal in goals(rows)}
    assert verdicts["start-to-attached below uflow's"].verdict == "not met"
    assert verdicts["peak RSS below uflow's"].verdict == "met"
    peers = next(goal for goal in goals(rows) if "peer doing the same job" in goal.text)
    assert peers.verdict == "not evaluated"


def test_peer_losses_come_from_the_counts():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}],
        ucalls=[{"seconds": 2.0, "events": 900, "entries": 900}],
        bpftrace=[{"seconds": 2.0, "events": 2002, "entries": 1000}],
    ), COUNTS)
    ucalls, bpftrace = rows[2], rows[3]
    assert ucalls.lost == 100 and "probes entries only" in ucalls.note  # of 1000 entries
    assert bpftrace.lost == 0


def test_aggregated_goals_and_unavailable_modes():
    rows = summarize(cells(
        untraced=[{"seconds": 1.0}], floor=[{"seconds": 3.0}],
        **{"stack --folded": [{"seconds": 3.2, "events": 2002, "lost": 0}]},
    ), COUNTS) + summarize([Cell("3.15", "fib", "calls", "pybpftrace", "not available", "no `calls` command")], COUNTS)
    cost = goals(rows)[0]
    assert cost.verdict == "met"
    assert "stack --folded on fib (3.15): 1.10x" in cost.evidence
    assert "Not available, so not judged: calls" in cost.evidence


def test_table_rows_say_why_a_tracer_has_no_figures():
    rows = summarize([
        Cell("3.15", "fib", "untraced", "untraced", runs=[{"seconds": 1.0}]),
        Cell("3.15", "fib", "top --once", "pybpftrace", "not available", "no `top` command"),
        Cell("3.15", "fib", "uflow", "peer", runs=[{"error": "did not attach: Failed to enable USDT probe"}]),
    ], COUNTS)
    lines = table(rows)
    assert lines[0].startswith("| Python | workload | tracer | slowdown |")
    assert lines[3] == "| 3.15 | fib | top --once | — | — | — | — | — | — | not available; no `top` command |"
    assert lines[4].endswith("| failed; did not attach: Failed to enable USDT probe |")


def test_reading_the_tracers_output():
    assert read_pybpftrace(lines("pybpftrace: tracing PID 1\npybpftrace: 2002 events, 3 lost, 1 threads, 1.00 s")).lost == 3
    uflow = (
        "Tracing method calls in python process 875... Ctrl-C to quit.\n"
        "CPU PID    TID    TIME(us) METHOD\n"
        "0   875    875    5.415    -> fib.py.fib\n"
        "0   875    875    5.415      <- fib.py.fib\n"
        "Possibly lost 7 samples\n"
    )
    seen = read_uflow(lines(uflow))
    assert (seen.events, seen.lost, seen.entries) == (2, 7, 1)
    ucalls = "Tracing calls in process 1 (language: python)... Ctrl-C to quit.\n\nMETHOD    # CALLS\nfib.py.fib    1973\n<frozen codecs>.decode    1\n"
    assert read_ucalls(lines(ucalls)).events == 1974
    latency = "Tracing calls in process 1 (language: python)... Ctrl-C to quit.\n\nMETHOD    # CALLS    TIME (us)\nfib.py.fib    1973    812.52\n<frozen codecs>.decode    1    3.10\n"
    seen = read_ucalls_latency(lines(latency))
    assert (seen.events, seen.entries) == (2 * 1974, 1974)
    assert read_bpftrace(lines("Attaching 2 probes...\n\n\n@entry: 0\n@return: 1976\n")).entries == 0
