"""How long each command takes from its launch until it traces, and from the end of its
--duration until it has exited, side by side in one run, with where the time goes (bench/
phases.py times each phase inside the real command line), beside py-spy's start. Run with
`python -m bench.startup`; it writes its section of BENCHMARKS.md. `--baseline CHECKOUT`
measures another checkout of pybpftrace (say, a `git worktree` of an older commit) in the
same rounds, for a before-and-after."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .phases import PHASES
from .report import replace_section
from .sampling import PY_SPY

HEADING = "## Startup and stop"
REPO = Path(__file__).resolve().parent.parent
WORKLOAD = Path(__file__).parent / "workloads" / "idling.py"
PHASES_SCRIPT = Path(__file__).parent / "phases.py"
PYTHON = "/usr/bin/python3.11"
REPEATS = 5
DURATION = 1.0  # each tracing command's --duration
TIMEOUT = 120
# As a user types them; {pid}: the target, {out}: a file in a scratch directory.
COMMANDS = {
    "stack": ["stack", "{pid}"],
    "calls": ["calls", "{pid}"],
    "gc": ["gc", "{pid}"],
    "imports": ["imports", "{pid}"],
    "audit": ["audit", "{pid}"],
    "profile": ["profile", "{pid}"],
    "profile --off-cpu": ["profile", "--off-cpu", "{pid}"],
    "top": ["top", "{pid}"],
    "dump": ["dump", "{pid}"],
}
ONE_SHOT = ("dump",)  # answers and exits: its start is its whole run, and it has no --duration
TRACING = re.compile(r"^pybpftrace: tracing ")
PY_SPY_COMMANDS = {
    "py-spy record": ["record", "--pid", "{pid}", "--duration", "1", "-o", "{out}"],
    "py-spy dump": ["dump", "--pid", "{pid}"],
}
PY_SPY_SAMPLING = re.compile(r"Sampling process")
NOTES = [
    "- **What the start is made of.** The compile is most of it, and the larger the program the longer: "
    "clang and LLVM build the BPF code of pybpftrace's C (its frame walker, its call tracking) at every start. "
    "The kernel's verifier comes next (*kernel load*). The rest (imports, reading the target's ELF files, "
    "attaching) is a few tenths of a second at most. The headers of the programs were cut to what they need: "
    "`uapi/linux/bpf_perf_event.h`, which every program that samples or walks stacks included, pulls the "
    "kernel's own `<linux/ptrace.h>` (and with it much of the kernel's headers) on x86; declaring its one "
    "struct instead leaves the compiled instructions byte for byte the same.",
    "- **What the stop waits for.** Closing each uprobe's perf event waits for the kernel's RCU grace periods "
    "(`tracepoint_synchronize_unregister`, under the kernel's `event_mutex`, so closing them from several "
    "threads at once takes as long), and so does detaching each tracepoint bcc attached (*bcc cleanup*): "
    "about 0.1 s each here, a uprobe per probe location. No sleep or poll of pybpftrace's own waits there. "
    "profile --off-cpu (and --wall, --idle) used to load the iterator that reads the threads still waiting "
    "only once --duration had ended; it is now verified while tracing.",
    "- **Caching the compiled program is not possible with bcc.** bcc's Python API (`BPF(src_file, hdr_file, "
    "text, debug, cflags, usdt_contexts, allow_rlimit, device, ...)`, bcc 0.26) compiles C text at every "
    "start (`bpf_module_create_c_from_string`): it takes no precompiled object, and the objects it builds "
    "(maps created during the compile, their descriptions for `get_table`, the BTF) live in its C++ module "
    "only. Loading a cached ELF would mean loading programs and maps without bcc (libbpf), which is another "
    "tracer, not a cache. What can be kept between runs (the ELF files' probe notes and symbols) is a few "
    "hundredths of a second.",
]
EMPTY_PROGRAM = "int empty(void *ctx) { return 0; }\n"
# The kernel headers pybpftrace's programs include (bpf/*.bpf.c, bpf/*.h), and the one the
# sampling programs included until it was found to cost most of a second.
OWN_INCLUDES = "#include <linux/types.h>\n#include <uapi/linux/bpf.h>\n#include <uapi/linux/ptrace.h>\n"
DROPPED_INCLUDE = "#include <uapi/linux/bpf_perf_event.h>\n"


@dataclass
class Run:
    attached: float  # seconds from launch until it says it traces (one-shot: until it exited)
    stopped: Optional[float]  # seconds from the end of --duration until it exited
    start: dict[str, float] = field(default_factory=dict)  # phase -> seconds, before it traced
    stop: dict[str, float] = field(default_factory=dict)  # phase -> seconds, after


@dataclass
class Row:
    name: str
    runs: list[Run] = field(default_factory=list)
    error: Optional[str] = None

    def median(self, pick) -> Optional[float]:
        values = [value for value in map(pick, self.runs) if value is not None]
        return statistics.median(values) if values else None


def _argv(name: str, pid: int, out: str, checkout: Optional[Path]) -> tuple[list[str], dict]:
    """The command line and environment of one run (checkout: another pybpftrace's)."""
    if name in PY_SPY_COMMANDS:
        return [str(PY_SPY), *(a.format(pid=pid, out=out) for a in PY_SPY_COMMANDS[name])], dict(os.environ)
    base = name.removesuffix(" (before)")
    args = [a.format(pid=pid, out=out) for a in COMMANDS[base]]
    if base not in ONE_SHOT:
        args += ["--duration", str(DURATION)]
    environment = dict(os.environ)
    if checkout:
        environment["PYTHONPATH"] = str(checkout)
    return [sys.executable, str(PHASES_SCRIPT), *args], environment


def run_once(name: str, pid: int, checkout: Optional[Path]) -> Run:
    """Launch the command, note when it says it traces and when it exits."""
    py_spy = name in PY_SPY_COMMANDS
    one_shot = name.removesuffix(" (before)") in ONE_SHOT or name == "py-spy dump"
    marker = PY_SPY_SAMPLING if py_spy else TRACING
    with tempfile.TemporaryDirectory(prefix="pybpftrace-startup-") as scratch:
        phases = Path(scratch) / "phases.json"
        argv, environment = _argv(name, pid, str(Path(scratch) / "out"), checkout)
        environment["BENCH_PHASES"] = str(phases)
        with open(Path(scratch) / "stdout", "wb") as out:
            environment["BENCH_LAUNCHED"] = str(time.monotonic_ns())
            launched = time.monotonic()
            # py-spy says it samples on stdout, pybpftrace that it traces on stderr
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if py_spy else out,
                                       stderr=subprocess.STDOUT if py_spy else subprocess.PIPE, cwd="/",
                                       env=environment)
            attached, lines = None, []
            for line in process.stdout if py_spy else process.stderr:  # as each line comes
                lines.append(line.decode(errors="replace"))
                if attached is None and marker.search(lines[-1]):
                    attached = time.monotonic() - launched
            process.wait(TIMEOUT)
            exited = time.monotonic()
        if process.returncode != 0 or (attached is None and not one_shot):
            raise RuntimeError(f"{name}: exited with {process.returncode}: {''.join(lines)[-300:].strip()}")
        if one_shot:
            return Run(exited - launched, None)
        if py_spy:  # it samples for --duration from its saying so
            return Run(attached, exited - (launched + attached + DURATION))
        measured = json.loads(phases.read_text())
        return Run(attached, exited - measured["deadline"], measured["start"], measured["stop"])


def compile_floor(repeats: int) -> dict[str, float]:
    """Median seconds bcc takes to compile an empty program (its own headers, LLVM, no code
    of ours), the same with the kernel headers pybpftrace's programs include, and with the
    one they no longer include."""
    import bcc

    programs = {"empty": EMPTY_PROGRAM, "with our includes": OWN_INCLUDES + EMPTY_PROGRAM,
                "with bpf_perf_event.h": OWN_INCLUDES + DROPPED_INCLUDE + EMPTY_PROGRAM}
    times: dict[str, list[float]] = {what: [] for what in programs}
    for _ in range(repeats):
        for what, text in programs.items():
            started = time.monotonic()
            program = bcc.BPF(text=text, cflags=["-w"])
            times[what].append(time.monotonic() - started)
            program.cleanup()
    return {what: statistics.median(found) for what, found in times.items()}


def bench(repeats: int, baseline: Optional[Path], say) -> list[Row]:
    names = [*COMMANDS, *(f"{name} (before)" for name in COMMANDS if baseline), *PY_SPY_COMMANDS]
    rows = {name: Row(name) for name in names}
    target = subprocess.Popen([PYTHON, str(WORKLOAD)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert target.stdout.readline() == b"ready\n"
        for repeat in range(repeats):
            # round-robin, one further each round: a drift of the load falls on all alike
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                row = rows[name]
                if row.error:
                    continue
                try:
                    row.runs.append(run_once(name, target.pid, baseline if name.endswith("(before)") else None))
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    row.error = str(error)
                say(f"startup {repeat + 1}/{repeats} {name}: " + (row.error or f"{row.runs[-1].attached:.2f} s"))
    finally:
        target.kill()
        target.wait()
    return list(rows.values())


def _seconds(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}"


def _phase(row: Row, side: str, phase: str) -> Optional[float]:
    if not row.runs or not row.runs[0].start:
        return None
    return row.median(lambda run: getattr(run, side).get(phase, 0.0))


def _other(run: Run, side: str) -> Optional[float]:
    """What the phases measured leave out: of the start, up to the announcement; of the stop,
    the final drain, the output, the interpreter's exit."""
    total = run.attached if side == "start" else run.stopped
    phases = getattr(run, side)
    return None if total is None or not phases else total - sum(phases.values())


def _beside_py_spy(rows: list[Row]) -> list[str]:
    """pybpftrace's quickest and slowest start against py-spy's, as ratios."""
    found = {row.name: row.median(lambda run: run.attached) for row in rows if row.runs and not row.error}
    py_spy = found.get("py-spy record")
    ours = {name: value for name, value in found.items() if name in COMMANDS and name not in ONE_SHOT}
    if not py_spy or not ours:
        return []
    quickest, slowest = min(ours, key=ours.get), max(ours, key=ours.get)
    return [f"Beside py-spy: `py-spy record` samples {py_spy:.2f} s after its launch; pybpftrace traces "
            f"{ours[quickest]:.2f} s after it at the quickest ({quickest}, {ours[quickest] / py_spy:.0f}x) and "
            f"{ours[slowest]:.2f} s at the slowest ({slowest}); most of it is the compile.", ""]


def document(rows: list[Row], floor: dict[str, float], repeats: int, load: str, baseline: Optional[str]) -> str:
    start_phases = [p for p in PHASES if any(_phase(r, "start", p) for r in rows)]
    stop_phases = [p for p in PHASES if any(_phase(r, "stop", p) for r in rows)]
    lines = [
        HEADING, "",
        f"CPython 3.11 (`{PYTHON}`), `bench/workloads/idling.py`: a loop of calls, a young collection and an "
        f"import every 10 ms, asleep in between. Each command as a user types it (`pybpftrace COMMAND PID "
        f"--duration {DURATION:g}`; dump without), {repeats} rounds, round-robin, medians; load average {load} "
        "at the end. *Attached*: from launch until it says `pybpftrace: tracing` (py-spy: `Sampling process`); "
        "dump and py-spy dump: until they have answered and exited. *Stop*: from the end of --duration until it "
        "has exited. The phases are measured inside the real command line (bench/phases.py wraps the functions "
        "each runs in; a phase inside another counts to its own only): *imports*: the interpreter's start and "
        "the command line's imports; *compile*: bcc's `BPF()` (clang and LLVM, bcc's headers); *kernel load*: "
        "the verifier's loading of each function; *attach*: perf_event_open of the uprobes, tracepoints and "
        "perf events; *other*: what is left (target discovery, generating the source, reading maps, the "
        "walker's registration)." + (f" *(before)*: {baseline}, in the same rounds." if baseline else ""), "",
        "| command | attached (s) | " + " | ".join(start_phases) + " | other | stop (s) | "
        + " | ".join(stop_phases) + " | other |",
        "| --- | " + " | ".join(["---:"] * (len(start_phases) + len(stop_phases) + 4)) + " |",
    ]
    for row in rows:
        if row.error:
            lines.append(f"| {row.name} | failed: {row.error[:120]} |")
            continue
        cells = [_seconds(row.median(lambda run: run.attached))]
        cells += [_seconds(_phase(row, "start", p)) for p in start_phases]
        cells += [_seconds(row.median(lambda run: _other(run, "start")))]
        cells += [_seconds(row.median(lambda run: run.stopped))]
        cells += [_seconds(_phase(row, "stop", p)) for p in stop_phases]
        cells += [_seconds(row.median(lambda run: _other(run, "stop")))]
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    lines += ["", f"bcc's fixed cost, in this process ({repeats} compiles each, median): an empty program compiles "
              f"in {floor['empty']:.2f} s, {floor['with our includes']:.2f} s with the kernel headers pybpftrace's "
              "programs include: the rest of each compile above is pybpftrace's own C. With "
              f"`uapi/linux/bpf_perf_event.h` too, which the sampling programs included before: "
              f"{floor['with bpf_perf_event.h']:.2f} s.", "", *_beside_py_spy(rows), *NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="another pybpftrace checkout, side by side")
    parser.add_argument("--label", help="what the baseline is, for the report (say, its commit)")
    parser.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root to load BPF programs: run `sudo make bench`", file=sys.stderr)
        return 1
    if not PY_SPY.exists():
        print(f"bench: no py-spy at {PY_SPY}: run bench/setup-py-spy.sh", file=sys.stderr)
        return 1
    say = lambda message: print(f"bench: {message}", file=sys.stderr, flush=True)
    rows = bench(options.repeats, options.baseline, say)
    floor = compile_floor(options.repeats)
    baseline = (options.label or str(options.baseline)) if options.baseline else None
    section = document(rows, floor, options.repeats, " ".join(f"{value:.2f}" for value in os.getloadavg()), baseline)
    replace_section(options.markdown, HEADING, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
