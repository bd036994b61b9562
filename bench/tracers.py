"""What runs beside a workload: the floor, pybpftrace's modes and the peers, each a command
line, the line that says it is tracing, and how to read what it saw from its output."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from .targets import Interpreter

REPO = Path(__file__).resolve().parent.parent

# pybpftrace's modes, as a user types them. {pid}: the target; {out}: a file to write to. A
# command this pybpftrace does not have yet is reported as "not available".
PYBPFTRACE_MODES = {
    "stack -o FILE": "stack {pid} -o {out}",
    "stack --folded": "stack {pid} --folded",
    "calls": "calls {pid}",
    "top --once": "top {pid} --once --interval 600",  # one table, for the whole work
}
# The pybpftrace modes that aggregate (what their goals say), and the peer doing each
# mode's job.
AGGREGATED = ("stack --folded", "calls", "top --once")
# The peer doing each mode's job: ucalls -L times calls (entries and returns) as calls does;
# plain ucalls counts entries, as top does.
PEER_FOR = {"stack -o FILE": "uflow", "stack --folded": "uflow", "calls": "ucalls -L", "top --once": "ucalls"}
ENTRY_ONLY_PEERS = ("ucalls",)  # without -L, ucalls probes function entries only
# What probes function entries only, and so is measured against the floor that does too:
# per event, an entry-only tracer spreads the interpreter's fixed per-call tracing cost (the
# raised semaphores) over half the hits, so beside the two-probe floor it would look dearer.
ENTRY_FLOOR = "floor (entries)"
ENTRY_ONLY = ("top --once", *ENTRY_ONLY_PEERS, ENTRY_FLOOR)
HOOK = "eval_frame hook alone"

# bcc's tools are named uflow-bpfcc on some Debian releases and uflow on others.
BCC_TOOL_DIRS = ("/usr/sbin", "/usr/share/bcc/tools")
BCC_TOOL_NAMES = {"uflow": ("uflow-bpfcc", "uflow"), "ucalls": ("ucalls-bpfcc", "ucalls")}

PYBPFTRACE_SUMMARY = re.compile(r"pybpftrace: (\d+) events, (\d+) lost")
# The pybpftrace measured: this checkout's, from the venv running the harness, unless
# $PYBPFTRACE names another command (say, another checkout's venv python -m pybpftrace).
PYBPFTRACE = shlex.split(os.environ.get("PYBPFTRACE", "")) or [sys.executable, "-m", "pybpftrace"]


@dataclass(frozen=True)
class Seen:
    """What a tracer says it saw: events (probe hits it handled), events it lost, and
    whether it saw function entries (None: it does not say)."""

    events: Optional[int] = None
    lost: Optional[int] = None
    entries: Optional[int] = None


@dataclass(frozen=True)
class Tracer:
    name: str
    kind: str  # "floor", "pybpftrace" or "peer"
    command: Callable[[int, Interpreter, str], list[str]]  # (pid, interpreter, out file) -> argv
    attached: re.Pattern  # in its stdout or stderr once it traces
    read: Callable[[Iterable[str]], Seen]  # the lines of its stdout and stderr -> what it saw
    # Probes whose semaphores it must have raised before it counts as attached: for a tracer
    # that says it is attaching before it has (bpftrace's `Attaching N probes...`).
    semaphores: tuple[str, ...] = ()
    stops_itself: bool = True  # it ends when the target exits; else it is sent SIGINT
    unbuffered: bool = False  # a Python peer: PYTHONUNBUFFERED, so that its Tracing line shows at once
    routes: tuple[str, ...] = ("usdt", "eval-frame")  # the routes it measures (the peers': probes only)

    def available(self, interpreter: Optional[Interpreter] = None) -> Optional[str]:
        """Why it cannot run here (on this interpreter's route), or None."""
        if interpreter is not None and interpreter.route not in self.routes:
            return ("it follows calls through the function probes" if interpreter.eval_frame else
                    "it measures the eval-frame route")
        return _availability(self.name)


def _pybpftrace_argv(command_line: str) -> Callable[[int, Interpreter, str], list[str]]:
    def argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
        route = ["--route", "eval-frame", "--eval-hook"] if interpreter.eval_frame else []
        return [*PYBPFTRACE, *shlex.split(command_line.format(pid=pid, out=shlex.quote(out))), *route]

    return argv


# Readers take the tracer's output line by line: uflow's runs to tens of MiB, and what the
# harness holds in memory shows in the peak RSS of every process it starts afterwards
# (a child's ru_maxrss starts from its parent's high-water mark).


def read_pybpftrace(lines: Iterable[str]) -> Seen:
    for line in lines:
        match = PYBPFTRACE_SUMMARY.match(line)
        if match:
            return Seen(int(match.group(1)), int(match.group(2)))
    return Seen()


def read_floor(lines: Iterable[str]) -> Seen:
    return Seen()


def read_floor_counts(lines: Iterable[str]) -> Seen:
    for line in lines:
        match = re.match(r"floor: (\d+) entries, (\d+) returns", line)
        if match:
            return Seen(int(match.group(1)) + int(match.group(2)), None, int(match.group(1)))
    return Seen()


UFLOW_EVENT = re.compile(r"\S+\s+\d+\s+\d+\s+\S+\s+ *(->|<-) ")


def read_uflow(lines: Iterable[str]) -> Seen:
    """A line per event seen, `->` for calls and `<-` for returns; bcc says `Possibly lost N
    samples` when its perf buffer overflowed."""
    entries = returns = lost = 0
    for line in lines:
        event = UFLOW_EVENT.match(line)
        if event:
            entries += event.group(1) == "->"
            returns += event.group(1) == "<-"
        elif line.startswith("Possibly lost"):
            lost += int(line.split()[2])
    return Seen(entries + returns, lost, entries)


def _ucalls_reader(latency: bool) -> Callable[[Iterable[str]], Seen]:
    """At SIGINT, ucalls prints a line per function under a `# CALLS` header: name, number of
    calls and, with -L, their time. Without -L it probes entries only; with it, returns too."""
    count_at_end = re.compile(r"\s(\d+)\s+[\d.]+\s*$" if latency else r"\s(\d+)\s*$")

    def read(lines: Iterable[str]) -> Seen:
        calls, counting = 0, False
        for line in lines:
            if counting:
                count = count_at_end.search(line)
                calls += int(count.group(1)) if count else 0
            counting = counting or "# CALLS" in line
        return Seen(2 * calls if latency else calls, None, calls)

    return read


read_ucalls = _ucalls_reader(latency=False)
read_ucalls_latency = _ucalls_reader(latency=True)


def read_bpftrace(lines: Iterable[str]) -> Seen:
    counts = {}
    for line in lines:
        match = re.match(r"@(entry|return): (\d+)", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    return Seen(counts.get("entry", 0) + counts.get("return", 0), None, counts.get("entry", 0))


def _floor_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    route = ["--route", "eval-frame"] if interpreter.eval_frame else []
    return [sys.executable, "-m", "bench.floor", *route, str(pid)]


def _hook_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    return [*_floor_argv(pid, interpreter, out), "--hook-only"]


def _entry_floor_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    return [*_floor_argv(pid, interpreter, out), "--entries"]


def _clock_floor_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    return [*_floor_argv(pid, interpreter, out), "--clock"]


def _counting_floor_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    return [*_floor_argv(pid, interpreter, out), "--count"]


def _bcc_argv(tool: str, *options: str) -> Callable[[int, Interpreter, str], list[str]]:
    def argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
        return [bcc_tool(tool) or tool, *options, "-l", "python", str(pid)]

    return argv


def _bpftrace_argv(pid: int, interpreter: Interpreter, out: str) -> list[str]:
    """Counts of the same two probes. `bpftrace -p PID` finds no probes in a chrooted process
    (it looks for the binary through /proc/PID/root), so there the probes go on the binary
    by its path from here, for every process running it, and a predicate keeps the target's."""
    binary = interpreter.host_python
    select, predicate = (["-p", str(pid)], "") if not interpreter.chrooted else ([], f"/pid == {pid}/ ")
    script = " ".join(
        f"usdt:{binary}:python:function__{kind} {predicate}{{ @{kind} = count(); }}" for kind in ("entry", "return")
    )
    return ["bpftrace", *select, "-e", script]


def bcc_tool(tool: str) -> Optional[str]:
    for directory in BCC_TOOL_DIRS:
        for name in BCC_TOOL_NAMES[tool]:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    return None


FLOOR = Tracer("floor", "floor", _floor_argv, re.compile(r"^floor: tracing", re.MULTILINE), read_floor)
FLOOR_OF_ENTRIES = Tracer(ENTRY_FLOOR, "floor", _entry_floor_argv, FLOOR.attached, read_floor)
# The floor reading the clock in each handler: what timing calls costs at the least.
FLOOR_WITH_CLOCK = Tracer("floor (clock)", "floor", _clock_floor_argv, FLOOR.attached, read_floor)
# The floor counting each probe's hits: the exact number of events of a workload.
COUNTING = Tracer("floor --count", "floor", _counting_floor_argv, FLOOR.attached, read_floor_counts)
MODES = tuple(
    Tracer(name, "pybpftrace", _pybpftrace_argv(line), re.compile(r"^pybpftrace: tracing", re.MULTILINE), read_pybpftrace)
    for name, line in PYBPFTRACE_MODES.items()
)
PEERS = (
    Tracer("uflow", "peer", _bcc_argv("uflow"), re.compile(r"^Tracing method calls", re.MULTILINE), read_uflow,
           stops_itself=False, unbuffered=True, routes=("usdt",)),
    Tracer("ucalls", "peer", _bcc_argv("ucalls"), re.compile(r"^Tracing calls", re.MULTILINE), read_ucalls,
           stops_itself=False, unbuffered=True, routes=("usdt",)),
    Tracer("ucalls -L", "peer", _bcc_argv("ucalls", "-L"), re.compile(r"^Tracing calls", re.MULTILINE),
           read_ucalls_latency, stops_itself=False, unbuffered=True, routes=("usdt",)),
    Tracer("bpftrace", "peer", _bpftrace_argv, re.compile(r"^Attaching \d+ probes", re.MULTILINE), read_bpftrace,
           semaphores=("function__entry", "function__return"), stops_itself=False, routes=("usdt",)),
)
# The eval-frame route's hook alone (nothing probed): what making every call go through the
# evaluator costs the target by itself.
HOOK_ALONE = Tracer(HOOK, "floor", _hook_argv, FLOOR.attached, read_floor, routes=("eval-frame",))
TRACERS = (FLOOR, FLOOR_OF_ENTRIES, FLOOR_WITH_CLOCK, HOOK_ALONE, *MODES, *PEERS)


@functools.cache
def _availability(name: str) -> Optional[str]:
    if name in PYBPFTRACE_MODES:
        command = PYBPFTRACE_MODES[name].split()[0]
        probe = subprocess.run([*PYBPFTRACE, command, "--help"], capture_output=True, cwd="/")
        return None if probe.returncode == 0 else f"this pybpftrace has no `{command}` command"
    tool = name.split()[0]  # "ucalls -L": the ucalls tool
    if tool in BCC_TOOL_NAMES:
        return None if bcc_tool(tool) else f"{tool} is not installed (Debian's bpfcc-tools)"
    if name == "bpftrace":
        return None if shutil.which("bpftrace") else "bpftrace is not installed"
    return None
