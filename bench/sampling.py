"""The sampling profilers side by side: `pybpftrace profile` (at its default rate, at 1000 Hz,
and off-CPU) and py-spy (at 100 and 1000 Hz, as it runs by default: pausing the target to read
it), on the same workloads and interpreters, a few times round-robin with untraced runs.

What each costs the target (its own timing, against the untraced runs of the same rounds), what
the kernel spends per sample and per frame walked (its own BPF run-time statistics), how close
the shares are to the workload's own, and the tracer's CPU, peak RSS and start."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .targets import Interpreter, Workload, WorkloadProcess
from .tracers import PYBPFTRACE

PY_SPY = Path(os.environ.get("PY_SPY", "/var/cache/pybpftrace-bench/py-spy/bin/py-spy"))
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
START_SECONDS = 60
STOP_SECONDS = 30

INTERPRETERS = (
    Interpreter("3.11", "/usr/bin/python3.11"),
    Interpreter("3.13 (trixie chroot, no function probes)", "/usr/bin/python3.13", "trixie"),
    Interpreter("3.15 (sid chroot)", "/usr/bin/python3.15", "sid"),
)
WORKLOADS = (
    Workload("fib", "fib.py", 33, "call-heavy: recursive fib(33)"),
    Workload("realistic", "realistic.py", 20000, "20000 orders through json, re, dataclasses and classes"),
    Workload("shares", "shares.py", 5, "5 s of CPU split 50/30/20 between three functions, each timing its own"),
)
HANDOFF = Workload("handoff", "handoff.py", 30000, "producer and consumer threads handing 30000 items over a queue")


@dataclass(frozen=True)
class Profiler:
    name: str
    kind: str  # "pybpftrace", "py-spy" or "floor"
    arguments: tuple[str, ...]
    started: str  # a regex its stderr matches once it samples

    def command(self, pid: int, out: str) -> list[str]:
        if self.kind == "py-spy":
            return [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--output", out, *self.arguments]
        if self.kind == "floor":
            return [sys.executable, str(OFF_CPU_FLOOR), str(pid)]
        return [*PYBPFTRACE, "profile", str(pid), "-o", out, "--quiet", *self.arguments]


PROFILERS = (
    Profiler("profile (default, 999 Hz)", "pybpftrace", (), r"pybpftrace: tracing"),
    Profiler("profile --rate 99", "pybpftrace", ("--rate", "99"), r"pybpftrace: tracing"),
    Profiler("py-spy 100 Hz", "py-spy", ("--rate", "100"), r"Sampling process"),
    Profiler("py-spy 1000 Hz", "py-spy", ("--rate", "1000"), r"Sampling process"),
)
OFF_CPU_FLOOR = Path(__file__).resolve().parent / "offcpu_floor.py"
OFF_CPU = (
    Profiler("profile (default, 999 Hz)", "pybpftrace", (), r"pybpftrace: tracing"),
    Profiler("profile --off-cpu", "pybpftrace", ("--off-cpu",), r"pybpftrace: tracing"),
    # empty programs on the tracepoints --off-cpu takes: what the tracepoints cost by themselves
    Profiler("off-CPU floor (empty programs)", "floor", (), r"floor: tracing"),
)


@dataclass
class Measurement:
    """One run: the workload's own seconds, and for a profiler its cost and what it saw."""

    seconds: Optional[float] = None
    start_seconds: Optional[float] = None  # launched -> says it samples
    cpu_seconds: Optional[float] = None  # the tracer's, start and all
    sampling_cpu_seconds: Optional[float] = None  # the tracer's, from saying it samples to its stop
    peak_rss_mib: Optional[float] = None
    samples: Optional[int] = None  # stacks it read (pybpftrace: its summary line; py-spy: its samples)
    kernel_ns: Optional[int] = None  # BPF run time of its programs
    kernel_runs: Optional[int] = None
    frames: Optional[int] = None  # frames walked, over all samples
    shares: Optional[dict] = None  # the workload's functions' shares of the samples
    own_shares: Optional[dict] = None  # as the workload measured them
    error: Optional[str] = None


def available() -> Optional[str]:
    """Why the sampling comparison cannot run here, or None."""
    if not PY_SPY.exists():
        return f"py-spy is missing ({PY_SPY}: `make bench` installs it)"
    return None


def run_once(interpreter: Interpreter, workload: Workload, profiler: Optional[Profiler]) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="pybpftrace-bench-") as scratch:
        out = str(Path(scratch) / "profile.out")
        try:
            with open(Path(scratch) / "workload.err", "wb") as errors:
                target = WorkloadProcess(interpreter, workload, workload.size, errors)
        except RuntimeError as error:
            return Measurement(error=str(error))
        tracer = None
        try:
            started = 0.0
            if profiler is not None:
                tracer, started = _start(profiler, target.pid, out, Path(scratch))
                cpu_at_start = _cpu_seconds(tracer.pid)
            seconds = target.go()
            own = _own_shares(target) if workload.name == "shares" else None
            target.wait()
            if tracer is None:
                return Measurement(seconds=seconds)
            kernel = _kernel_stats(tracer.pid) if profiler.kind != "py-spy" else (None, None)
            usage = _stop(tracer)
            cpu = usage.ru_utime + usage.ru_stime
            measured = Measurement(seconds=seconds, start_seconds=started, cpu_seconds=cpu,
                                   sampling_cpu_seconds=cpu - cpu_at_start, peak_rss_mib=usage.ru_maxrss / 1024,
                                   kernel_ns=kernel[0], kernel_runs=kernel[1], own_shares=own)
            if profiler.kind != "floor":  # which writes nothing
                _read(profiler, out, (Path(scratch) / "tracer.err").read_text(errors="replace"), measured)
            return measured
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
            return Measurement(error=str(error))
        finally:
            target.kill()
            if tracer is not None and tracer.poll() is None:
                os.killpg(tracer.pid, signal.SIGKILL)
                tracer.wait()


def _start(profiler: Profiler, pid: int, out: str, scratch: Path) -> tuple[subprocess.Popen, float]:
    err = scratch / "tracer.err"
    launched = time.monotonic()
    with open(err, "wb") as stderr:  # and stdout: where py-spy says it samples
        process = subprocess.Popen(profiler.command(pid, out), stdin=subprocess.DEVNULL, stdout=stderr,
                                   stderr=stderr, cwd="/", start_new_session=True)
    while time.monotonic() - launched < START_SECONDS:
        if re.search(profiler.started, err.read_text(errors="replace")):
            return process, time.monotonic() - launched
        if process.poll() is not None:
            raise RuntimeError(f"{profiler.name} did not start: {err.read_text(errors='replace').strip()[-300:]}")
        time.sleep(0.005)
    raise RuntimeError(f"{profiler.name} did not start within {START_SECONDS} s")


def _own_shares(target: WorkloadProcess) -> Optional[dict]:
    line = target._line(10)
    try:
        return json.loads(line)
    except ValueError:
        return None


def _cpu_seconds(pid: int) -> float:
    """A running process's user and system time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _kernel_stats(pid: int) -> tuple[Optional[int], Optional[int]]:
    """The run time and runs of the tracer's BPF programs (tail calls count in the program
    that made them), from their file descriptors, while it still holds them."""
    run_ns = runs = 0
    found = False
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = fd.read_text()
        except OSError:
            continue
        if "prog_type" not in text:
            continue
        values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "run_time_ns" in values:
            found = True
            run_ns += int(values["run_time_ns"])
            runs += int(values["run_cnt"])
    return (run_ns, runs) if found else (None, None)


def _stop(process: subprocess.Popen):
    os.killpg(process.pid, signal.SIGINT)
    pidfd = os.pidfd_open(process.pid)
    try:
        if not select.select([pidfd], [], [], STOP_SECONDS)[0]:
            raise RuntimeError(f"did not stop within {STOP_SECONDS} s of SIGINT")
    finally:
        os.close(pidfd)
    _, _, usage = os.wait4(process.pid, 0)
    return usage


FUNCTIONS = ("func_a", "func_b", "func_c")


SUMMARY = re.compile(r"pybpftrace: (\d+) (?:samples|stacks), (\d+) lost")


def _read(profiler: Profiler, out: str, messages: str, measured: Measurement) -> None:
    """Samples, frames walked and the shares of the workload's functions, from the folded
    stacks both write (py-spy's `raw` format is folded stacks; pybpftrace's off-CPU weights
    are time, so there its summary line counts the stacks, and frames are not counted)."""
    samples = frames = 0
    per_function = dict.fromkeys(FUNCTIONS, 0)
    with open(out, errors="replace") as folded:
        for line in folded:
            stack, _, weight = line.rstrip("\n").rpartition(" ")
            if not weight.isdigit():
                continue
            count = int(weight)
            samples += count
            frames += count * (stack.count(";") + 1)
            for function in FUNCTIONS:
                if f";{function} (" in stack or stack.startswith(f"{function} ("):
                    per_function[function] += count
    measured.samples, measured.frames = samples, frames
    summary = SUMMARY.search(messages)
    if profiler.kind == "pybpftrace" and summary:
        measured.samples = int(summary.group(1))
        if "--off-cpu" in profiler.arguments:
            measured.frames = None
    total = sum(per_function.values())
    if total:
        measured.shares = {function: count / total for function, count in per_function.items()}


@dataclass
class Row:
    interpreter: str
    workload: str
    profiler: str
    runs: list[Measurement] = field(default_factory=list)
    untraced: list[float] = field(default_factory=list)

    def median(self, attribute: str) -> Optional[float]:
        values = [getattr(run, attribute) for run in self.runs if getattr(run, attribute) is not None]
        return statistics.median(values) if values else None

    @property
    def slowdown(self) -> Optional[float]:
        seconds = self.median("seconds")
        return seconds / statistics.median(self.untraced) if seconds and self.untraced else None

    @property
    def ns_per_run(self) -> Optional[float]:
        """The kernel's time per run of the tracer's programs (any tracepoint hit, any tick)."""
        spent = [run.kernel_ns / run.kernel_runs for run in self.runs if run.kernel_ns and run.kernel_runs]
        return statistics.median(spent) if spent else None

    @property
    def ns_per_sample(self) -> Optional[float]:
        spent = [run.kernel_ns / run.samples for run in self.runs if run.kernel_ns and run.samples]
        return statistics.median(spent) if spent else None

    @property
    def ns_per_frame(self) -> Optional[float]:
        spent = [run.kernel_ns / run.frames for run in self.runs if run.kernel_ns and run.frames]
        return statistics.median(spent) if spent else None

    @property
    def share_error(self) -> Optional[float]:
        """The largest gap, in points, between a function's share of the samples and its own
        share of the CPU time, over the runs."""
        gaps = [abs(run.shares[f] - run.own_shares[f]) * 100 for run in self.runs if run.shares and run.own_shares
                for f in FUNCTIONS]
        return max(gaps) if gaps else None

    @property
    def errors(self) -> list[str]:
        return [run.error for run in self.runs if run.error]

    def to_json(self) -> dict:
        return {"interpreter": self.interpreter, "workload": self.workload, "profiler": self.profiler,
                "untraced_seconds": self.untraced, "runs": [asdict(run) for run in self.runs],
                "slowdown": self.slowdown, "ns_per_run": self.ns_per_run, "ns_per_sample": self.ns_per_sample,
                "ns_per_frame": self.ns_per_frame,
                "share_error_points": self.share_error}


def bench(repeats: int, say: Callable[[str], None]) -> list[Row]:
    """Every interpreter, workload and profiler, `repeats` rounds, each round with its own
    untraced run of each workload; the off-CPU mode on the hand-off workload."""
    rows: dict[tuple[str, str, str], Row] = {}
    previous = STATS.read_text().strip()
    STATS.write_text("1")
    try:
        for repeat in range(repeats):
            for interpreter in INTERPRETERS:
                if interpreter.missing():
                    continue
                interpreter.prepare()
                for workload, profilers in [(w, PROFILERS) for w in WORKLOADS] + [(HANDOFF, OFF_CPU)]:
                    untraced = run_once(interpreter, workload, None)
                    say(f"sampling {repeat + 1}/{repeats} {interpreter.name} {workload.name} untraced: "
                        + (untraced.error or f"{untraced.seconds:.3f} s"))
                    for profiler in profilers:
                        row = rows.setdefault((interpreter.name, workload.name, profiler.name),
                                              Row(interpreter.name, workload.name, profiler.name))
                        if untraced.seconds:
                            row.untraced.append(untraced.seconds)
                        run = run_once(interpreter, workload, profiler)
                        row.runs.append(run)
                        say(f"sampling {repeat + 1}/{repeats} {interpreter.name} {workload.name} {profiler.name}: "
                            + (run.error or f"{run.seconds:.3f} s, {run.samples} samples"))
    finally:
        STATS.write_text(previous)
    return list(rows.values())


def _number(value: Optional[float], pattern: str) -> str:
    return pattern.format(value) if value is not None else "–"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| interpreter | workload | profiler | slowdown | samples | kernel per sample | per frame walked "
        "| per program run | shares, worst gap | tracer CPU (while sampling) | peak RSS | start |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.interpreter} | {row.workload} | {row.profiler} | {_number(row.slowdown, '{:.3f}x')} "
            f"| {_number(row.median('samples'), '{:.0f}')} "
            f"| {_number(row.ns_per_sample and row.ns_per_sample / 1000, '{:.1f} µs')} "
            f"| {_number(row.ns_per_frame, '{:.0f} ns')} | {_number(row.ns_per_run, '{:.0f} ns')} "
            f"| {_number(row.share_error, '{:.2f} points')} "
            f"| {_number(row.median('cpu_seconds'), '{:.2f} s')} ({_number(row.median('sampling_cpu_seconds'), '{:.2f} s')}) "
            f"| {_number(row.median('peak_rss_mib'), '{:.0f} MiB')} | {_number(row.median('start_seconds'), '{:.2f} s')} |"
            + (f" {len(row.errors)} failed: {row.errors[0][:120]}" if row.errors else "")
        )
    return lines


def goals(rows: list[Row]) -> list[tuple[str, bool, str]]:
    """(goal, met, figures) for the sampling goals."""

    def pick(profiler: str, workload: Optional[str] = None) -> list[Row]:
        return [row for row in rows if row.profiler == profiler and (workload is None or row.workload == workload)
                and row.slowdown is not None]

    verdicts = []
    ours = {(row.interpreter, row.workload): row.slowdown for row in pick("profile (default, 999 Hz)")}
    spy = {(row.interpreter, row.workload): row.slowdown for row in pick("py-spy 100 Hz")}
    pairs = [(key, ours[key], spy[key]) for key in ours if key in spy and key[1] != "handoff"]
    verdicts.append((
        "slowdown at the default rate no worse than py-spy's at 100 Hz",
        bool(pairs) and all(mine <= theirs + 0.005 for _, mine, theirs in pairs),
        "; ".join(f"{i} {w}: {mine:.3f}x vs {theirs:.3f}x" for (i, w), mine, theirs in pairs),
    ))
    high = [(row.interpreter, row.workload, row.slowdown) for row in pick("profile (default, 999 Hz)")
            if row.workload != "handoff"]
    verdicts.append((
        "at 1000 Hz (the default, 999) at most 1.05x",
        bool(high) and all(slowdown <= 1.05 for _, _, slowdown in high),
        "; ".join(f"{i} {w}: {s:.3f}x" for i, w, s in high),
    ))
    gaps = [(row.interpreter, row.share_error) for row in rows
            if row.profiler == "profile (default, 999 Hz)" and row.workload == "shares" and row.share_error is not None]
    verdicts.append((
        "shares within 1 point of the workload's own timing at 1000 Hz",
        bool(gaps) and all(gap <= 1.0 for _, gap in gaps),
        "; ".join(f"{i}: {gap:.2f} points" for i, gap in gaps),
    ))
    off = {row.interpreter: row.slowdown for row in pick("profile --off-cpu", "handoff")}
    on = {row.interpreter: row.slowdown for row in pick("profile (default, 999 Hz)", "handoff")}
    floor = {row.interpreter: row.slowdown for row in pick("off-CPU floor (empty programs)", "handoff")}
    verdicts.append((
        "--off-cpu on a workload that switches threads at every item: at most 1.05x",
        bool(off) and all(value <= 1.05 for value in off.values()),
        "; ".join(f"{i}: {off[i]:.3f}x (plain profile {on.get(i, float('nan')):.3f}x, empty programs on its "
                  f"tracepoints {floor.get(i, float('nan')):.3f}x)" for i in off),
    ))
    return verdicts


HEADING = "## Sampling: profile beside py-spy"


def document(rows: list[Row], repeats: int, minutes: float, load: str) -> str:
    lines = [
        HEADING,
        "",
        f"Run in {minutes:.1f} minutes, load average {load} at its end. "
        f"Each workload untraced and beside each profiler, {repeats} rounds, round-robin; the slowdown is the "
        "median of the traced runs over the median of the untraced runs of the same rounds. py-spy 0.4 runs as it "
        "does by default, pausing the target while it reads it. The kernel's cost is its own BPF run-time "
        "statistics (`kernel.bpf_stats_enabled`, read from the tracer's program file descriptors before it "
        "stops): every run of pybpftrace's programs, on every CPU, tail calls included, over the samples it "
        "took, and over the frames those samples hold; per program run: over every run of its programs (for "
        "--off-cpu: every scheduler switch and system call on the machine). The off-CPU floor holds empty programs on the "
        "tracepoints --off-cpu takes (bench/offcpu_floor.bpf.c): what firing them costs by itself. "
        "Shares: the workload's three functions' shares of the "
        "samples against the shares of CPU time each measured for itself; the worst gap of the runs. Start: "
        "from launch until the profiler says it samples (pybpftrace compiles its program with bcc first). "
        "Tracer CPU: its user and system time, start and all, and in brackets from its start to its stop.",
        "",
        *table(rows),
        "",
        "| goal | verdict | figures |",
        "| --- | --- | --- |",
        *[f"| {goal} | {'**met**' if met else '**not met**'} | {figures} |" for goal, met, figures in goals(rows)],
        "",
    ]
    return "\n".join(lines)
