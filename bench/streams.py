"""`stack -o FILE` at full rate (issue 24), side by side with another checkout when asked:
events lost per output format with one and two traced threads, the tracer's CPU per million
events, its peak RSS, and its RSS through a 60-second trace; writes its section of BENCHMARKS.md.

    python -m bench.streams [--baseline /path/to/other/checkout] [--repeats N]

Each run launches the workload under the tracer (3.11, its function probes, the default ring
buffer), so that every call is traced from the first; runs of the checkouts alternate.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .report import replace_section

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3.11"
WORKLOADS = REPO / "bench" / "workloads"
HEADING = "## stack -o FILE at full rate"
FORMATS = {"text": "calls.txt", "Perfetto": "calls.trace.json"}
LOADS = {1: ("fib.py", 27), 2: ("threads.py", 25)}  # threads: workload, fib(size) on each
EMPTY = ("fib.py", 0)  # the same launch without the work: the tracer's fixed cost (its compile, mostly)
LONG_SECONDS = 60
RSS_EVERY = 5.0
SUMMARY = re.compile(r"pybpftrace: (\d+) events, (\d+) lost")
GOAL_MIB = 50  # the 60-second trace may grow the tracer's RSS by at most this much after its first 10 s


@dataclass
class Run:
    events: int
    lost: int
    cpu: float  # the tracer's user + system seconds
    peak_mib: float


def trace(checkout: Path, output: str, workload: str, size: int, duration: Optional[float] = None,
          rss: Optional[list[float]] = None) -> Run:
    """One launched run under checkout's pybpftrace; rss: filled with the tracer's RSS every RSS_EVERY s."""
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:  # on disk, as a user's file would be
        argv = [sys.executable, "-m", "pybpftrace", "stack", "-q", "-o", str(Path(scratch) / output)]
        argv += ["--duration", str(duration)] if duration else []
        argv += ["--", PYTHON, str(WORKLOADS / workload), str(size)]
        env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}  # another checkout's left as it is
        process = subprocess.Popen(argv, cwd="/", env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        sampler = None
        if rss is not None:
            sampler = threading.Thread(target=_sample_rss, args=(process, rss), daemon=True)
            sampler.start()
        process.stdin.write(b"\n")  # the workload's go line
        process.stdin.close()
        stderr = process.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.join()
    found = SUMMARY.search(stderr)
    if not found:
        raise RuntimeError(f"{' '.join(argv)}: {stderr.strip()}")
    return Run(int(found.group(1)), int(found.group(2)), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _sample_rss(process: subprocess.Popen, into: list[float]) -> None:
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                into.append(int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024)
        except (OSError, StopIteration):
            return
        time.sleep(RSS_EVERY)


def bench(checkouts: dict[str, Path], repeats: int) -> tuple[dict, dict, dict]:
    """(runs by (checkout, format, threads), fixed CPU by checkout, RSS samples by (checkout, format))."""
    runs: dict[tuple[str, str, int], list[Run]] = {}
    fixed: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, checkout in checkouts.items():  # alternating
            fixed.setdefault(name, []).append(trace(checkout, FORMATS["text"], *EMPTY).cpu)
            for form, output in FORMATS.items():
                for threads, (workload, size) in LOADS.items():
                    run = trace(checkout, output, workload, size)
                    runs.setdefault((name, form, threads), []).append(run)
                    print(f"{name} {form} {threads} thread(s): {run}", file=sys.stderr)
    long_rss: dict[tuple[str, str], list[float]] = {}
    for form, output in FORMATS.items():
        for name, checkout in checkouts.items():
            samples: list[float] = []
            trace(checkout, output, "fib.py", 36, duration=LONG_SECONDS, rss=samples)
            long_rss[(name, form)] = samples
            print(f"{name} {form} {LONG_SECONDS} s: RSS {samples}", file=sys.stderr)
    return runs, {name: statistics.median(cpus) for name, cpus in fixed.items()}, long_rss


def document(checkouts: dict[str, Path], runs: dict, fixed: dict, long_rss: dict, repeats: int) -> str:
    lines = [HEADING, "",
             f"Measured by `python -m bench.streams` alone (not the whole `make bench`), {repeats} runs of each, "
             "the checkouts alternating: " + ", ".join(f"*{name}*: `{path}`" for name, path in checkouts.items())
             + f". CPython 3.11 (`{PYTHON}`), launched under `stack -q -o FILE` (default 16 MiB ring buffer): "
             f"one thread computing fib({LOADS[1][1]}) (`bench/workloads/fib.py`), or two threads each computing "
             f"fib({LOADS[2][1]}) (`threads.py`). *Lost*: the worst run's. *CPU per million events*: the tracer's "
             "user and system time, less that of the same launch without the work (its fixed cost: compiling its "
             "program, mostly), per million events written (those the kernel handled, less those lost). *Peak RSS*: "
             f"the tracer's. *RSS over {LONG_SECONDS} s*: fib(36) traced for {LONG_SECONDS} s, the tracer's RSS "
             f"every {RSS_EVERY:.0f} s, first sample to last.", "",
             "| checkout | output | threads | events | lost (worst run) | CPU per million events written | peak RSS |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (name, form, threads), found in runs.items():
        events = statistics.median(run.events for run in found)
        cpu = statistics.median((run.cpu - fixed[name]) / (run.events - run.lost) * 1e6 for run in found)
        lost = max(found, key=lambda run: run.lost)
        lines.append(f"| {name} | {form} | {threads} | {events:,.0f} | {lost.lost:,} ({lost.lost / lost.events:.0%}) | "
                     f"{cpu:.2f} s | {max(run.peak_mib for run in found):.0f} MiB |")
    lines += ["", f"| checkout | output | RSS over {LONG_SECONDS} s (MiB) |", "| --- | --- | --- |"]
    for (name, form), samples in long_rss.items():
        lines.append(f"| {name} | {form} | {' → '.join(f'{mib:.0f}' for mib in samples)} |")
    lines += ["", "| goal | verdict | measured |", "| --- | --- | --- |"]
    newest = list(checkouts)[0]
    for threads in LOADS:
        worst = {form: max(run.lost for run in runs[(newest, form, threads)]) for form in FORMATS}
        met = not any(worst.values())
        lines.append(f"| stack -o FILE: 0 events lost, {threads} traced thread(s) at full rate, text and Perfetto | "
                     f"{'met' if met else '**not met**'} | "
                     + ", ".join(f"{form}: {lost:,} lost" for form, lost in worst.items()) + " |")
    for form in FORMATS:
        samples = long_rss[(newest, form)]
        settled = samples[2:] or samples  # after its first 10 s
        growth = settled[-1] - settled[0] if settled else float("nan")
        lines.append(f"| stack -o FILE ({form}): RSS flat through a {LONG_SECONDS}-second full-rate trace "
                     f"(at most {GOAL_MIB} MiB more after its first 10 s) | "
                     f"{'met' if growth <= GOAL_MIB else '**not met**'} | {growth:+.0f} MiB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--baseline", type=Path, help="another checkout, measured alternately")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root to load BPF programs", file=sys.stderr)
        return 1
    checkouts = {"this checkout": REPO}
    if options.baseline:
        checkouts["baseline"] = options.baseline.resolve()
    section = document(checkouts, *bench(checkouts, options.repeats), options.repeats)
    replace_section(options.markdown, HEADING, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
