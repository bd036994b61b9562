"""What stderr tells while tracing: the live status line counts in the summary's word (what
its consumer's records are); the Pythons found are told one line each, bounded, escaped, the
status line erased first and drawn again after."""

import io

from pybpftrace.progress import ERASE, FOUND_TOLD, FoundLines, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_counts_its_consumer_s_unit():
    stream = Terminal()
    Progress(lambda: (4321, 0), lambda: "svg to out.svg at the end", "samples", stream).update(0, 2_000_000_000)
    assert stream.getvalue() == ERASE + "pybpftrace: 2.0 s, 4,321 samples, 0 lost, svg to out.svg at the end"


def test_events_where_nothing_says_otherwise():
    stream = Terminal()
    Progress(lambda: (7, 1), lambda: "", stream=stream).update(0, 1_000_000_000)
    assert stream.getvalue() == ERASE + "pybpftrace: 1.0 s, 7 events, 1 lost"


def test_found_pythons_are_told_above_the_status_line():
    stream = Terminal()
    progress = Progress(lambda: (7, 0), lambda: "", stream=stream)
    progress.update(0, 1_000_000_000)
    FoundLines(stream).tell([(42, 1000, "CPython 3.11.2 at /usr/bin/python3.11")], progress)
    progress.update(0, 1_000_000_001)  # at once, not EVERY_NS later
    line = "pybpftrace: found PID 42 (CPython 3.11.2 at /usr/bin/python3.11): its stacks are read\n"
    status = ERASE + "pybpftrace: 1.0 s, 7 events, 0 lost"
    assert stream.getvalue() == status + ERASE + line + status


def test_found_pythons_are_told_up_to_a_bound_with_their_paths_escaped():
    stream = io.StringIO()
    found = FoundLines(stream)
    found.tell([(pid, 7, "CPython 3.13.5 at /tmp/\x1b[2Jevil\npython") for pid in range(FOUND_TOLD - 1)], None)
    found.tell([(pid, 7, "CPython 3.13.5 at /usr/bin/python3.13") for pid in range(100, 110)], None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == FOUND_TOLD + 1
    assert lines[0] == "pybpftrace: found PID 0 (CPython 3.13.5 at /tmp/\\x1b[2Jevil\\npython): its stacks are read"
    assert lines[FOUND_TOLD - 1].startswith("pybpftrace: found PID 100 ")
    assert lines[-1] == f"pybpftrace: found more Pythons: the first {FOUND_TOLD} are told, not the others"
    found.tell([(200, 7, "CPython 3.13.5 at /usr/bin/python3.13")], None)
    assert len(stream.getvalue().splitlines()) == FOUND_TOLD + 1


def test_a_process_found_again_is_not_told_again():
    """The walker may register one Python twice (a wait registers it, then its exec event is
    heard): one line. The same PID started again (reused), or running another Python, is news."""
    stream = io.StringIO()
    found = FoundLines(stream)
    python = "CPython 3.13.5 at /usr/bin/python3.13"
    found.tell([(42, 1000, python), (42, 1000, python)], None)
    found.tell([(42, 1000, python)], None)
    found.tell([(42, 2000, python), (42, 2000, "CPython 3.15.0 at /usr/bin/python3.15")], None)
    assert stream.getvalue().splitlines() == [
        f"pybpftrace: found PID 42 ({python}): its stacks are read",
        f"pybpftrace: found PID 42 ({python}): its stacks are read",
        "pybpftrace: found PID 42 (CPython 3.15.0 at /usr/bin/python3.15): its stacks are read",
    ]


def test_pythons_found_again_do_not_count_towards_the_bound():
    stream = io.StringIO()
    found = FoundLines(stream)
    python = "CPython 3.13.5 at /usr/bin/python3.13"
    for pid in range(FOUND_TOLD):
        found.tell([(pid, 1, python), (pid, 1, python)], None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == FOUND_TOLD and "more" not in lines[-1]
    found.tell([(0, 1, python), (FOUND_TOLD, 1, python)], None)
    assert stream.getvalue().splitlines()[FOUND_TOLD:] == [
        f"pybpftrace: found more Pythons: the first {FOUND_TOLD} are told, not the others"]


def test_a_python_told_of_that_is_another_tracer_is_told_of_again():
    stream = io.StringIO()
    found = FoundLines(stream)
    found.tell([(42, 1000, "CPython 3.11.2 at /usr/bin/python3.11")], None)
    found.left_out([42, 43], None)  # 43 was never told of: nothing to take back
    assert stream.getvalue().splitlines()[1:] == ["pybpftrace: PID 42 is another pybpftrace: its stacks are no longer read"]
