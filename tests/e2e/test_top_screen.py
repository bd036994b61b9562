"""`top`'s live screen in a real terminal (tmux), and how every `top` ends: the whole run's
table last, whether --duration, Ctrl-C (SIGINT), q or the target's exit ends it; never an
empty or partial table."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from support import HOST, TIMEOUT, Target, Tracer, line_of, pybpftrace_command, summary_line

TITLE = r"\d\d:\d\d:\d\d  (\d+) samples "
INTERVAL_TITLE = re.compile(TITLE + r"in the last \d+\.\d\d s$")
RUN_TITLE = re.compile(TITLE + r"in the whole run of (\d+\.\d\d) s$")
HEADER = "     PID   %OWN %TOTAL   OWN(s) TOTAL(s)      CALLS  FUNCTION (FILE:LINE)"
SUMMARY = re.compile(r"pybpftrace: (\d+) samples, 0 lost, (\d+\.\d\d) s \((\w+)\)$")


def row(target: Target, function: str) -> re.Pattern:
    """A table's row of a function of shares.py: its PID, four numbers, its calls."""
    where = re.escape(f"{function} ({target.path}:{line_of('shares.py', f'def {function}')})")
    return re.compile(rf"^ +{target.pid}( +\d+\.\d+){{4}} +(\d+)  {where}$")


def tables(text: str) -> list[list[str]]:
    """Each table: its title, then its header and rows."""
    return [block.splitlines() for block in text.strip("\n").split("\n\n")]


def check_run_table(target: Target, table: list[str], summary: str, ended_by: str) -> None:
    """The whole run's table: the summary's samples and seconds, spin on top with calls."""
    samples, seconds, how = SUMMARY.match(summary).groups()
    title = RUN_TITLE.match(table[0])
    assert title, table[0]
    assert title.groups() == (samples, seconds) and how == ended_by
    assert table[1] == HEADER
    assert row(target, "spin").match(table[2]), table
    assert int(row(target, "spin").match(table[2]).group(2)) > 0  # calls counted over the run


# plain tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["duration", "SIGINT"])
def test_plain_tables_end_with_the_whole_run(end):
    """Intervals, then the whole run's table, whose samples are the summary's: the part of an
    interval cut short by the end is in it, not in a table of its own."""
    target = Target("shares.py", "30")
    try:
        options = ["--duration", "2.5"] if end == "duration" else []
        tracer = Tracer("top", target.pid, "--interval", "1", "--top", "50", *options)
        tracer.wait_attached()
        target.go()
        if end == "SIGINT":
            deadline = time.monotonic() + TIMEOUT
            while tracer.stdout.count(b" samples in the last ") < 2:
                assert time.monotonic() < deadline, tracer.stdout.decode()
                time.sleep(0.05)
            tracer.signal(signal.SIGINT)
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
    assert code == 0, stderr
    *intervals, last = tables(stdout)
    assert len(intervals) >= 2 if end == "SIGINT" else len(intervals) == 2
    for interval in intervals:
        assert INTERVAL_TITLE.match(interval[0]) and interval[1] == HEADER, interval
    check_run_table(target, last, summary_line(stderr), end)
    interval_samples = sum(int(INTERVAL_TITLE.match(interval[0]).group(1)) for interval in intervals)
    assert int(RUN_TITLE.match(last[0]).group(1)) >= interval_samples


def test_plain_tables_of_a_run_shorter_than_an_interval():
    """One table, the whole run's, however short the run."""
    target = Target("shares.py", "30")
    try:
        tracer = Tracer("top", target.pid, "--interval", "30", "--duration", "1.5")
        tracer.wait_attached()
        target.go()
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
    assert code == 0, stderr
    (table,) = tables(stdout)
    check_run_table(target, table, summary_line(stderr), "duration")


# the live screen -----------------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own, its pane kept once its command ends (to read what the
    command left on the terminal, and its exit status)."""

    def __init__(self, tmp_path):
        assert shutil.which("tmux"), "tmux is missing: run make setup"
        self.socket = str(tmp_path / "tmux")

    def __call__(self, *args: str) -> str:
        # without the LINES and COLUMNS pytest sets, which curses would take over the pane's size
        env = {name: value for name, value in os.environ.items() if name not in ("LINES", "COLUMNS")}
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True,
                              env=env).stdout

    def start(self, command: list[str]) -> None:
        """Run command in a pane of 250x40, then say its exit status and keep the pane (bash
        lets a Ctrl-C the command handles end only the command)."""
        line = " ".join(map(shlex.quote, command)) + '; echo "exit status $?"; sleep 600'
        self("-f", "/dev/null", "new-session", "-d", "-x", "250", "-y", "40", "-s", "top", "bash", "-c", line)

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "top").splitlines()

    def wait_screen(self, done, what: str) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        while not done(lines := self.screen()):
            assert time.monotonic() < deadline, f"{what} never came:\n" + "\n".join(lines)
            time.sleep(0.1)
        return lines

    def exit_status(self) -> tuple[int, list[str]]:
        """Once the command has ended: its exit status, and the screen it left before it."""
        lines = self.wait_screen(lambda lines: any(line.startswith("exit status ") for line in lines), "the end")
        (end,) = [index for index, line in enumerate(lines) if line.startswith("exit status ")]
        return int(lines[end].split()[-1]), lines[:end]

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def live_table(lines: list[str]) -> bool:
    return len(lines) > 3 and " samples in the last " in lines[0] and "spin (" in "\n".join(lines[3:])


@pytest.mark.parametrize("end", ["q", "SIGINT", "duration"])
def test_live_screen_is_top_s_alone_and_leaves_the_whole_run(tmp_path, end):
    """The tracer's own lines stay on the terminal's screen, above: the live screen shows its
    title, a blank line and its header where they belong, nothing drawn over them. Ended by q,
    by Ctrl-C or by --duration, top leaves the whole run's table under the announcement."""
    tmux = Tmux(tmp_path)
    target = Target("shares.py", "60")
    try:
        options = ["--duration", "4"] if end == "duration" else []
        tmux.start(pybpftrace_command("top", target.pid, "--interval", "0.5", *options))
        first = tmux.wait_screen(lambda lines: lines and lines[0].endswith("(q to quit)"), "the live screen")
        target.go()
        screen = tmux.wait_screen(live_table, "a table with spin")
        if end == "q":
            tmux("send-keys", "-t", "top", "q")
        elif end == "SIGINT":
            tmux("send-keys", "-t", "top", "C-c")
        code, left = tmux.exit_status()
    finally:
        tmux.close()
        target.kill()
    assert "pybpftrace:" not in "\n".join(first + screen)  # nothing over the screen
    assert re.fullmatch(TITLE + r"in the last \d+\.\d\d s  \(q to quit\)", screen[0]), screen[0]
    assert screen[1] == "" and screen[2] == HEADER
    assert any(row(target, "spin").match(line) for line in screen[3:]), "\n".join(screen)
    assert code == 0
    # on the terminal's own screen: the announcement, the whole run's table, the summary
    assert left[0].startswith(f"pybpftrace: tracing PID {target.pid} (") and left[0].endswith("; Ctrl-C to stop")
    table, summary = tables("\n".join(left[1:]))
    assert summary == [left[-1]]  # the table, a blank line, the summary: nothing else
    check_run_table(target, table, summary[0], {"q": "done"}.get(end, end))
