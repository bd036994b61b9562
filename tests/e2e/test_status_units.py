"""The live status line counts what the summary line counts: profile's samples (stacks with
waits), not events."""

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios

import pytest

from support import TIMEOUT, Target, pybpftrace_command
from test_formats import ERASE, read_terminal


@pytest.mark.parametrize("weighing, unit", [([], "samples"), (["--wall"], "stacks")])
def test_profile_s_status_line_counts_samples(tmp_path, weighing, unit):
    with Target("forever.py") as target:
        primary, secondary = os.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 300, 0, 0))  # rows, columns
        tracer = subprocess.Popen(
            pybpftrace_command("profile", target.pid, *weighing, "-o", tmp_path / "forever.folded"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary)
        os.close(secondary)
        try:
            text = read_terminal(primary, lambda text: text.count(ERASE + b"pybpftrace: ") >= 2)
            tracer.send_signal(signal.SIGINT)
            text += read_terminal(primary, lambda text: False)
            assert tracer.wait(TIMEOUT) == 0
        finally:
            os.close(primary)
            if tracer.poll() is None:
                tracer.kill()
    last_line = text.decode().rstrip("\r\n").rsplit("\n", 1)[-1]
    status, summary = last_line.split(ERASE.decode())[1], last_line.rsplit(ERASE.decode(), 1)[-1]
    assert re.fullmatch(rf"pybpftrace: [\d.]+ s, [\d,]+ {unit}, [\d,]+ lost, folded to \S+ at the end", status), status
    assert re.match(rf"pybpftrace: \d+ {unit}, \d+ lost", summary), summary
