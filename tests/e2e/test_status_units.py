"""The live status line counts what the summary line counts: profile's samples (stacks with
waits), not events."""

import re

import pytest

from support import Target
from test_formats import ERASE, on_a_terminal


@pytest.mark.parametrize("weighing, unit", [([], "samples"), (["--wall"], "stacks")])
def test_profile_s_status_line_counts_samples(tmp_path, weighing, unit):
    with Target("forever.py") as target:
        text = on_a_terminal("profile", target.pid, *weighing, "-o", tmp_path / "forever.folded",
                             until=lambda text: text.count(ERASE + b"pybpftrace: ") >= 2)
    last_line = text.decode().rstrip("\r\n").rsplit("\n", 1)[-1]
    status, summary = last_line.split(ERASE.decode())[1], last_line.rsplit(ERASE.decode(), 1)[-1]
    assert re.fullmatch(rf"pybpftrace: [\d.]+ s, [\d,]+ {unit}, [\d,]+ lost, folded to \S+ at the end", status), status
    assert re.match(rf"pybpftrace: \d+ {unit}, \d+ lost", summary), summary
