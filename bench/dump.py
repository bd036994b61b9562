"""`pybpftrace dump` beside `py-spy dump`, side by side in one run: the time each takes to
answer on a process whose one thread runs without pause, how long that thread stood still
while each read it (the longest gap between two turns of its loop: the target's own clock),
and what `--locals` costs on a frame with 30 locals. Run with `python -m bench.dump`; it
writes its section of BENCHMARKS.md."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from .report import replace_section
from .sampling import PY_SPY
from .tracers import PYBPFTRACE

HEADING = "## dump beside py-spy dump"
WORKLOAD = Path(__file__).parent / "workloads" / "dumped.py"
TASKS_WORKLOAD = Path(__file__).parent / "workloads" / "tasks.py"
TASKS = (1_000, 10_000)  # pending asyncio tasks read by dump
TASKS_GOAL = 1.0  # s: 10,000 tasks listed "in well under a second" (issue 23)
PYTHON = "/usr/bin/python3.11"
REPEATS = 5


def _gap(target: subprocess.Popen) -> float:
    target.stdin.write(b"\n")
    target.stdin.flush()
    return float(target.stdout.readline())


def _timed(target: subprocess.Popen, argv: list[str]) -> tuple[float, float, str]:
    """Seconds to answer, the target's longest gap meanwhile, and its stdout."""
    _gap(target)
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, timeout=120)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.decode(errors='replace').strip()}")
    return seconds, _gap(target), result.stdout.decode(errors="replace")


def bench() -> tuple[list[tuple[str, float, float, float]], tuple[float, float]]:
    """(what, median seconds to answer, median longest gap in ms, median 'stacks read' ms)."""
    target = subprocess.Popen([PYTHON, str(WORKLOAD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert target.stdout.readline() == b"ready\n"
        pid = str(target.pid)
        commands = {
            "no tool (the target's own gaps)": ["sleep", "0.5"],
            "pybpftrace dump": [*PYBPFTRACE, "dump", pid],
            "pybpftrace dump --locals": [*PYBPFTRACE, "dump", "--locals", pid],
            "py-spy dump": [str(PY_SPY), "dump", "--pid", pid],
            "py-spy dump --nonblocking": [str(PY_SPY), "dump", "--nonblocking", "--pid", pid],
            "py-spy dump --locals": [str(PY_SPY), "dump", "--locals", "--pid", pid],
        }
        costs = locals_cost(target.pid)
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for _ in range(REPEATS):  # round-robin, so that the machine's load falls on all alike
            for name, argv in commands.items():
                seconds, gap, out = _timed(target, argv)
                read = next((float(line.split("stacks read in ")[1].split(" ms")[0]) for line in out.splitlines()
                             if "stacks read in " in line), float("nan"))
                runs[name].append((seconds, gap * 1e3, read))
    finally:
        target.kill()
    return [(name, *(statistics.median(run[i] for run in found) for i in range(3))) for name, found in runs.items()], costs


def locals_cost(pid: int) -> tuple[float, float]:
    """Median ms of one dump of pid without and with --locals, one program loaded for all (in
    this process: what --locals adds, without the compile)."""
    from pybpftrace.sampling import find_walked_targets
    from pybpftrace.target import TargetOptions
    from pybpftrace.tools.dump import Dumper

    walked = find_walked_targets(TargetOptions(pids=[pid]))[1][pid]
    dumper = Dumper()
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(4 * REPEATS):
            for with_locals in (False, True):
                started = time.monotonic()
                dumper.dump(pid, walked, with_locals)
                times[with_locals].append((time.monotonic() - started) * 1e3)
    finally:
        dumper.close()
    return statistics.median(times[False]), statistics.median(times[True])


def tasks_cost() -> dict[int, tuple[float, float]]:
    """Tasks -> median ms of a dump's stacks and of its asyncio tasks, one program loaded for
    all, on a process with that many pending tasks."""
    from pybpftrace.sampling import find_walked_targets
    from pybpftrace.target import TargetOptions
    from pybpftrace.tools.dump import Dumper

    dumper, found = Dumper(), {}
    try:
        for count in TASKS:
            target = subprocess.Popen([PYTHON, str(TASKS_WORKLOAD), str(count)], stdout=subprocess.PIPE)
            try:
                assert target.stdout.readline() == b"ready\n"
                walked = find_walked_targets(TargetOptions(pids=[target.pid]))[1][target.pid]
                dumps = [dumper.dump(target.pid, walked) for _ in range(REPEATS)]
                assert all(len(dump.tasks.tasks) == count + 1 for dump in dumps)  # and main's
                found[count] = (statistics.median(dump.seconds * 1e3 for dump in dumps),
                                statistics.median(dump.tasks.seconds * 1e3 for dump in dumps))
            finally:
                target.kill()
                target.wait()
    finally:
        dumper.close()
    return found


def document(rows, costs: tuple[float, float], tasks: dict[int, tuple[float, float]]) -> str:
    lines = [HEADING, "",
             f"CPython 3.11 (`{PYTHON}`), `bench/workloads/dumped.py`: one thread recursing 20 deep and back "
             "without pause, timing its own loop; one asleep in a frame of 30 locals. Medians of "
             f"{REPEATS} runs, round-robin. *Answer*: the command's wall time (pybpftrace's includes compiling "
             "its BPF program, some 2 s); *read*: pybpftrace's own `stacks read in` (the walk, the aimed ticks, "
             "the re-reads); *longest stall*: the running thread's longest gap between two turns of its loop "
             "while the command ran (the first row: its own gaps, no tool running).", "",
             "| command | answer (s) | read (ms) | longest stall of the running thread (ms) |",
             "| --- | --- | --- | --- |"]
    for name, seconds, gap, read in rows:
        shown_read = f"{read:.1f}" if read == read else "—"
        lines.append(f"| {name} | {seconds:.2f} | {shown_read} | {gap:.1f} |")
    without, with_locals = costs
    lines += ["", f"`--locals`, measured in one process with the program loaded once ({4 * REPEATS} dumps each, "
              f"median): a dump of the target takes {without:.1f} ms, {with_locals:.1f} ms with the locals of "
              f"its frames (the 30 of one frame among them), {with_locals - without:.1f} ms more. The stall "
              "column counts CPU contention too: pybpftrace compiles its program (some 2 s of a core) "
              "beside the target on a 2-core machine, and never pauses it; py-spy stops the process "
              "(ptrace) while it reads, unless `--nonblocking`."]
    lines += ["", f"asyncio tasks (`bench/workloads/tasks.py`: N tasks, each waiting on an Event two coroutines deep), "
              f"read by `dump` after the stacks, one program loaded for all ({REPEATS} dumps each, median):", "",
              "| pending tasks | stacks read (ms) | tasks read (ms) | per 1,000 tasks (ms) | goal |", "| --- | --- | --- | --- | --- |"]
    for count, (stacks, read) in tasks.items():
        verdict = (f"met (< {TASKS_GOAL:.0f} s)" if read < TASKS_GOAL * 1e3 else f"not met (≥ {TASKS_GOAL:.0f} s)") \
            if count == max(TASKS) else ""
        lines.append(f"| {count:,} | {stacks:.1f} | {read:.1f} | {read / count * 1e3:.1f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if not PY_SPY.exists():
        print(f"bench: no py-spy at {PY_SPY}: run bench/setup-py-spy.sh", file=sys.stderr)
        return 1
    section = document(*bench(), tasks_cost())
    markdown = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
    replace_section(markdown, HEADING, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
