"""The live status line counts in the summary's word: what its consumer's records are."""

import io

from pybpftrace.progress import ERASE, Progress


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
